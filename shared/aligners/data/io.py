"""Readers and writers for triples and inspector examples, in our layouts and the published ones.

Layouts (``layout=``):

- ``triples``: JSONL/JSON/CSV rows with ``question, answer, correction`` (+ ``criterion``,
  ``metadata``); ``pku`` is the same shape, a JSON list as the Aligner authors publish it.
- ``examples``: JSONL/JSON/CSV rows with ``question, answer, label`` (1 = aligned).
- ``ibm``: the "Aligners" CSV ``input, initial_response, aligned_response``.
- ``alpacaeval``: AlpacaEval ``model_outputs.json`` of an aligner run
  (``instruction, original_output, output``).
- ``hh-rlhf``: Anthropic HH-RLHF JSONL (optionally ``.gz``) with ``chosen``/``rejected``
  transcripts; the question is the dialogue up to the last ``\\n\\nAssistant:``, ``rejected``'s
  last turn is the answer and ``chosen``'s the correction.

Malformed rows are reported with file and line (:class:`RowError`) and either skipped (kept in
:attr:`ReadResult.errors`) or fatal (:class:`DataFormatError`), as the caller chooses.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from aligners.data.records import CorrectionTriple, InspectorExample

logger = logging.getLogger(__name__)

Layout = Literal["auto", "triples", "pku", "examples", "ibm", "alpacaeval", "hh-rlhf"]
OnError = Literal["skip", "raise"]
LAYOUTS: tuple[str, ...] = ("auto", "triples", "pku", "examples", "ibm", "alpacaeval", "hh-rlhf")
HH_ASSISTANT = "\n\nAssistant:"

R = TypeVar("R", bound=BaseModel)


class DataFormatError(ValueError):
    """A row (or a whole file) that does not fit the expected layout."""


@dataclass(frozen=True)
class RowError:
    """One malformed row: where it is and what is wrong with it."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ReadResult:
    """Records read from one or more files, and the rows that were skipped."""

    records: list[Any] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        self.records.extend(other.records)
        self.errors.extend(other.errors)


# -- raw rows ----------------------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")  # type: ignore[arg-type]
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115


def _base_suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


def iter_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line, row)`` for every row of a JSONL, JSON (list) or CSV file.

    JSONL lines that are not JSON yield ``(line, DataFormatError)`` so the caller can report them;
    a JSON file's rows are numbered by position (1-based item number).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = _base_suffix(path)
    with _open_text(path) as handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                return
            for row in reader:
                yield reader.line_num, row
        elif suffix == ".json":
            try:
                data = json.load(handle)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
            if isinstance(data, dict):
                # Some dumps wrap the list: {"data": [...]} or {"train": [...]}.
                lists = [v for v in data.values() if isinstance(v, list)]
                if len(lists) != 1:
                    raise DataFormatError(f"{path}: expected a JSON list of records")
                data = lists[0]
            if not isinstance(data, list):
                raise DataFormatError(f"{path}: expected a JSON list of records")
            yield from enumerate(data, start=1)
        elif suffix in (".jsonl", ".ndjson"):
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, DataFormatError(f"not valid JSON: {exc.msg}")
        else:
            raise DataFormatError(
                f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .json or .csv "
                "(optionally .gz)"
            )


# -- layouts -----------------------------------------------------------------------------------


def split_hh_transcript(transcript: str) -> tuple[str, str]:
    """Split an HH-RLHF transcript into (dialogue so far, last assistant turn)."""
    index = transcript.rfind(HH_ASSISTANT)
    if index == -1:
        raise ValueError("transcript has no '\\n\\nAssistant:' turn")
    return transcript[:index].strip(), transcript[index + len(HH_ASSISTANT) :].strip()


def detect_layout(row: Any) -> str:
    """Guess a layout from the keys of one row."""
    if not isinstance(row, dict):
        raise DataFormatError(f"expected an object per row, got {type(row).__name__}")
    keys = set(row)
    if {"chosen", "rejected"} <= keys:
        return "hh-rlhf"
    if {"instruction", "original_output", "output"} <= keys:
        return "alpacaeval"
    if {"input", "initial_response", "aligned_response"} <= keys:
        return "ibm"
    if {"question", "answer", "correction"} <= keys:
        return "triples"
    if {"question", "answer", "label"} <= keys:
        return "examples"
    raise DataFormatError(
        f"cannot tell the layout from the fields {sorted(keys)}; expected question/answer/"
        "correction, question/answer/label, input/initial_response/aligned_response, "
        "instruction/original_output/output or chosen/rejected"
    )


def _require(row: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if n not in row or row[n] is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    values = [row[n] for n in names]
    for name, value in zip(names, values):
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be text, got {type(value).__name__}")
    return values


def _triple_from_row(row: Any, layout: str, criterion: str | None) -> CorrectionTriple:
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    if layout in ("triples", "pku"):
        question, answer, correction = _require(row, "question", "answer", "correction")
        metadata = row.get("metadata") or {}
        if isinstance(metadata, str):  # CSV cells hold JSON text
            metadata = json.loads(metadata) if metadata.strip() else {}
        return CorrectionTriple(
            question=question,
            answer=answer,
            correction=correction,
            criterion=row.get("criterion") or criterion,
            metadata=metadata,
        )
    if layout == "ibm":
        question, answer, correction = _require(
            row, "input", "initial_response", "aligned_response"
        )
        return CorrectionTriple(
            question=question, answer=answer, correction=correction, criterion=criterion
        )
    if layout == "alpacaeval":
        question, answer, correction = _require(row, "instruction", "original_output", "output")
        meta = {"generator": row["generator"]} if row.get("generator") else {}
        return CorrectionTriple(
            question=question,
            answer=answer,
            correction=correction,
            criterion=criterion,
            metadata=meta,
        )
    if layout == "hh-rlhf":
        chosen, rejected = _require(row, "chosen", "rejected")
        question, good = split_hh_transcript(chosen)
        rejected_question, bad = split_hh_transcript(rejected)
        meta = {} if rejected_question == question else {"prompt_mismatch": True}
        return CorrectionTriple(
            question=question, answer=bad, correction=good, criterion=criterion, metadata=meta
        )
    raise DataFormatError(f"layout {layout!r} holds no correction triples")


def _example_from_row(row: Any, criterion: str | None) -> InspectorExample:
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    question, answer = _require(row, "question", "answer")
    label = row.get("label")
    if isinstance(label, str):  # CSV
        label = label.strip().lower()
        label = {"1": 1, "0": 0, "true": 1, "false": 0, "aligned": 1, "misaligned": 0}.get(
            label, label
        )
    if label not in (0, 1) or isinstance(label, float) and label not in (0.0, 1.0):
        raise ValueError(f"label must be 0 or 1, got {row.get('label')!r}")
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata) if metadata.strip() else {}
    return InspectorExample(
        question=question,
        answer=answer,
        label=int(label),
        criterion=row.get("criterion") or criterion,
        metadata=metadata,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def _read(
    path: str | Path,
    layout: str,
    on_error: OnError,
    build: Any,
    limit: int | None,
) -> ReadResult:
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    result = ReadResult()
    resolved = None if layout == "auto" else layout
    for line, row in iter_rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            if resolved is None:
                resolved = detect_layout(row)
            result.records.append(build(row, resolved))
        except (ValueError, TypeError) as exc:
            error = RowError(str(path), line, _describe(exc))
            if on_error == "raise":
                raise DataFormatError(str(error)) from None
            result.errors.append(error)
        if limit is not None and len(result.records) >= limit:
            break
    if result.errors:
        # Skipped rows are returned in result.errors; this line makes sure nobody misses them.
        logger.warning(
            "skipped %d malformed row(s) in %s (first: %s)",
            len(result.errors),
            path,
            result.errors[0],
        )
    return result


def read_triples(
    path: str | Path,
    *,
    layout: Layout = "auto",
    criterion: str | None = None,
    on_error: OnError = "skip",
    limit: int | None = None,
) -> ReadResult:
    """Read correction triples from a file in any supported layout.

    ``criterion`` fills records that name none. Returns a :class:`ReadResult`; with
    ``on_error="raise"`` the first malformed row raises :class:`DataFormatError` naming its line.
    """
    return _read(
        path, layout, on_error, lambda row, lay: _triple_from_row(row, lay, criterion), limit
    )


def read_examples(
    path: str | Path,
    *,
    layout: Layout = "auto",
    criterion: str | None = None,
    on_error: OnError = "skip",
    limit: int | None = None,
) -> ReadResult:
    """Read inspector examples; triple layouts become two examples each (correction = 1,
    answer = 0; unchanged triples are skipped because they carry no contrast)."""
    from aligners.data.records import triples_to_examples

    def build(row: Any, lay: str) -> Any:
        if lay == "examples":
            return _example_from_row(row, criterion)
        return _triple_from_row(row, lay, criterion)

    result = _read(path, layout, on_error, build, limit)
    examples: list[InspectorExample] = []
    for record in result.records:
        if isinstance(record, CorrectionTriple):
            examples.extend(triples_to_examples([record]))
        else:
            examples.append(record)
    result.records = examples
    return result


# -- writers -----------------------------------------------------------------------------------


def _rows(records: Iterable[BaseModel]) -> list[dict[str, Any]]:
    return [r.model_dump() for r in records]


def write_records(path: str | Path, records: Iterable[BaseModel]) -> Path:
    """Write records as JSONL (``.jsonl``, ``.jsonl.gz``), a JSON list (``.json``) or CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = _rows(records)
    suffix = _base_suffix(path)
    tmp = path.with_name(path.name + ".tmp")
    if suffix in (".jsonl", ".ndjson"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif suffix == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    elif suffix == ".csv":
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else ["question", "answer", "correction"]
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
        text = buffer.getvalue()
    else:
        raise DataFormatError(
            f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .json or .csv"
        )
    # Write then rename, so an interrupted write never leaves a half file behind.
    if path.suffix == ".gz":
        with gzip.open(tmp, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def append_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> None:
    """Append records to a JSONL file and flush (resumable pipelines call this per batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for r in records:
            row = r.model_dump() if isinstance(r, BaseModel) else r
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
