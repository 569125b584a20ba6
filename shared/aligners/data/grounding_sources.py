"""Human-labelled grounding data read from local copies of four public repositories.

Nothing here downloads: a user clones (or downloads the named files of) a repository and passes
its folder; a folder without the files gives no rows (:func:`read_begin_dev` and the others
return ``[]``), so the recipe runs with any subset of them.

* BEGIN dev (``google/BEGIN-dataset``: ``wow/begin_dev_wow.tsv``, ``cmu-dog/begin_dev_cmu.tsv``,
  ``topicalchat/begin_dev_tc.tsv``; CC BY 4.0 for WoW and CMU-DoG, CDLA-Sharing-1.0 for
  Topical-Chat): responses of four dialogue models to a knowledge snippet, labelled "Fully
  attributable" (supported), "Not fully attributable" (not) or "Generic" (left out: it claims
  nothing). Only the dev files are read; BEGIN test is kept for blind evaluation.
* FaithDial's audit files (``McGill-NLP/FaithDial``: ``data-audit/{GPT2,CTRL,DoHA,gold}/*.csv``,
  MIT): 200-1,000 responses per model and benchmark (WoW, CMU-DoG, Topical-Chat) with BEGIN
  labels; any "hallucination" label = not supported, "entailment" alone (or with
  "uncooperative") = supported; generic, uncooperative-only and unlabelled rows are left out.
* WiCE train (``ryokamoi/wice``: ``data/entailment_retrieval/claim/train.jsonl``; annotations
  ODC-BY, text from Wikipedia CC BY-SA and Common Crawl): a Wikipedia sentence against the web
  page it cites; "supported" = supported, "partially_supported" / "not_supported" = not. Only
  the train file is read; WiCE dev and test belong to LLM-AggreFact and WiCE's own evaluation.
* Factcheck-GPT's claim-evidence stance pairs (``yuxiaw/Factcheck-GPT``:
  ``subtasks/subtask3_claim_evidence_stance.jsonl``, Apache-2.0): "completely-support" =
  supported; "partially-support", "refute" and "irrelevant" = not. LLM-AggreFact holds a
  FactCheck-GPT subset built from the same claims, so a model trained on these rows can no
  longer be measured blind on that subset: the shipped recipe leaves them out.

Splits: each row's passage decides (:func:`~aligners.data.grounding.split_of` over its words,
lower-cased, so BEGIN and FaithDial rows with the same knowledge land together), 15 % held out
and 10 % validation by default; WiCE by the cited article's Wikipedia title, Factcheck-GPT by
the claim. A pair's passage is the 60-word window of the passage (the inspector's windows)
sharing the most content words with the claim, so training reads what the inspector reads.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aligners.data.grounding import (
    GroundedAnswer,
    GroundingDataConfig,
    GroundingPair,
    Split,
    _hash_id,
    split_of,
    split_sentences,
)
from aligners.sources import best_chunks, chunk_passages, claim_text

BEGIN_DEV_FILES = {
    "wow": "wow/begin_dev_wow.tsv",
    "cmu": "cmu-dog/begin_dev_cmu.tsv",
    "tc": "topicalchat/begin_dev_tc.tsv",
}
FAITHDIAL_AUDIT_DIR = "data-audit"
WICE_TRAIN_FILE = "data/entailment_retrieval/claim/train.jsonl"
FACTCHECK_GPT_FILE = "subtasks/subtask3_claim_evidence_stance.jsonl"
WINDOW_WORDS = 60


class LabelledTurn(BaseModel):
    """One labelled dialogue response (BEGIN dev, FaithDial audit) or claim (WiCE,
    Factcheck-GPT): is ``response`` supported by ``knowledge``?"""

    model_config = ConfigDict(extra="forbid")

    source: str
    knowledge: str
    history: str = ""
    response: str
    label: int
    origin: str
    split_key: str


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def blind_key(knowledge: str, response: str) -> str:
    """A (knowledge, response) pair's identity, blind to case, spacing and punctuation."""
    return _hash_id("blind", _normal(knowledge), _normal(response))


def _blind_overlap() -> frozenset[str]:
    from aligners.data.grounding_blind import BLIND_OVERLAP

    return BLIND_OVERLAP


def _root(path: str | Path) -> Path:
    return Path(path).expanduser()


# -- readers: a folder in, labelled rows out (none where the files are absent) ------------------

_BEGIN_LABELS = {"fully attributable": 1, "not fully attributable": 0}


def read_begin_dev(path: str | Path, exclude: Collection[str] | None = None) -> list[LabelledTurn]:
    """BEGIN's dev split (the three ``begin_dev_*.tsv`` files under a clone of
    google/BEGIN-dataset); "Generic" responses are left out, and pairs whose
    :func:`blind_key` is in ``exclude`` (default: those a blind set holds too, among them 97
    WoW rows of TRUE's BEGIN and 11 of BEGIN test). Never reads the test files."""
    exclude = _blind_overlap() if exclude is None else exclude
    rows: list[LabelledTurn] = []
    for benchmark, relative in BEGIN_DEV_FILES.items():
        file = _root(path) / relative
        if not file.is_file():
            continue
        with file.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                label = _BEGIN_LABELS.get((row.get("begin_label") or "").strip().lower())
                knowledge, response = (row.get(k) or "" for k in ("knowledge", "response"))
                if label is None or not knowledge.strip() or not response.strip():
                    continue
                if blind_key(knowledge, response) in exclude:
                    continue
                rows.append(
                    LabelledTurn(
                        source="begin_dev",
                        knowledge=knowledge.strip(),
                        history=(row.get("message") or "").strip(),
                        response=response.strip(),
                        label=label,
                        origin=f"{benchmark}/{row.get('model_name', '').strip()}",
                        split_key=_normal(knowledge),
                    )
                )
    return rows


def faithdial_label(value: str) -> int | None:
    """A FaithDial audit BEGIN label (one or several, comma separated, as annotated) as
    supported (1), not (0) or unusable (None: generic, uncooperative only, empty)."""
    tags = {t for t in re.split(r"[^a-z]+", value.lower()) if t}
    if tags & {"hallucination", "hallucinated"}:
        return 0
    if any(t.startswith("entailment") for t in tags):
        return 1
    return None


def read_faithdial_audit(
    path: str | Path, exclude: Collection[str] | None = None
) -> list[LabelledTurn]:
    """FaithDial's audit files (``data-audit/*/*.csv`` under a clone of McGill-NLP/FaithDial,
    or that folder itself): (knowledge, previous turn, response, BEGIN label) per row; pairs
    whose :func:`blind_key` is in ``exclude`` (default: those a blind set holds) left out."""
    exclude = _blind_overlap() if exclude is None else exclude
    root = _root(path)
    folder = root / FAITHDIAL_AUDIT_DIR if (root / FAITHDIAL_AUDIT_DIR).is_dir() else root
    rows: list[LabelledTurn] = []
    for file in sorted(folder.glob("*/*.csv")):
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or len(header) < 4:
                continue
            for values in reader:
                if len(values) < 4:
                    continue
                # gold: evidence,history,response,BEGIN,VRM; models: knowledge,history,<model>,...
                knowledge, history, response, label_text = (v.strip() for v in values[:4])
                label = faithdial_label(label_text)
                if label is None or not knowledge or not response:
                    continue
                if blind_key(knowledge, response) in exclude:
                    continue
                rows.append(
                    LabelledTurn(
                        source="faithdial_audit",
                        knowledge=knowledge,
                        history=history,
                        response=response,
                        label=label,
                        origin=f"{file.parent.name}/{file.stem}",
                        split_key=_normal(knowledge),
                    )
                )
    return rows


_WICE_LABELS = {"supported": 1, "partially_supported": 0, "not_supported": 0}


def read_wice_train(path: str | Path) -> list[LabelledTurn]:
    """WiCE's train split (``data/entailment_retrieval/claim/train.jsonl`` under a clone of
    ryokamoi/wice, or the file itself). A supported claim keeps, as its knowledge, the window of
    the cited page it is read against only where that window holds one of its annotated sets of
    supporting sentences; an unsupported claim is unsupported by any window."""
    file = _root(path)
    if file.is_dir():
        file = file / WICE_TRAIN_FILE
    if not file.is_file() or file.name != "train.jsonl":
        return []
    rows: list[LabelledTurn] = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        label = _WICE_LABELS.get(row.get("label", ""))
        evidence = [str(s).strip() for s in row.get("evidence") or []]
        claim = str(row.get("claim", "")).strip()
        if label is None or not claim or not evidence:
            continue
        window = _window_holding(claim, evidence, row.get("supporting_sentences") or [], label)
        if window is None:
            continue
        meta = row.get("meta") or {}
        title = str(meta.get("claim_title") or claim)
        rows.append(
            LabelledTurn(
                source="wice_train",
                knowledge=window,
                response=claim,
                label=label,
                origin=str(meta.get("id", "")),
                split_key=_normal(title),
            )
        )
    return rows


def _window_holding(
    claim: str, evidence: Sequence[str], supporting: Sequence[Sequence[int]], label: int
) -> str | None:
    """The best ``WINDOW_WORDS`` window of the evidence sentences for ``claim``; for a supported
    claim only if it holds every sentence of one supporting set (else None)."""
    windows: list[list[int]] = [[]]
    words = 0
    for index, sentence in enumerate(evidence):
        size = len(sentence.split())
        if windows[-1] and words + size > WINDOW_WORDS:
            windows.append([windows[-1][-1]])  # one sentence of overlap, as chunk_passages
            words = len(evidence[windows[-1][0]].split())
        windows[-1].append(index)
        words += size
    texts = [" ".join(evidence[i] for i in w) for w in windows]
    best = best_chunks(claim, texts, 1)[0]
    if label == 1 and not any(s and all(i in windows[best] for i in s) for s in supporting):
        return None
    return texts[best]


_FACTCHECK_LABELS = {
    "completely-support": 1,
    "partially-support": 0,
    "refute": 0,
    "irrelevant": 0,
}


def read_factcheck_gpt(path: str | Path) -> list[LabelledTurn]:
    """Factcheck-GPT's (evidence, claim, stance) pairs (``subtasks/subtask3_claim_evidence_
    stance.jsonl`` under a clone of yuxiaw/Factcheck-GPT, or the file itself)."""
    file = _root(path)
    if file.is_dir():
        file = file / FACTCHECK_GPT_FILE
    if not file.is_file():
        return []
    rows: list[LabelledTurn] = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        label = _FACTCHECK_LABELS.get(str(row.get("stance", "")).strip().lower())
        claim, evidence = str(row.get("claim", "")).strip(), str(row.get("evidence", "")).strip()
        if label is None or not claim or not evidence:
            continue
        rows.append(
            LabelledTurn(
                source="factcheck_gpt",
                knowledge=evidence,
                response=claim,
                label=label,
                origin=str(row.get("stance")),
                split_key=_normal(claim),
            )
        )
    return rows


# -- conversion to the recipe's pairs and answer rows -----------------------------------------


def best_window(knowledge: str, claim: str, words: int = WINDOW_WORDS) -> str:
    """The window of ``knowledge`` (cut as the inspector cuts sources) sharing the most
    content words with ``claim``; the whole text when it is one window."""
    windows = [text for _, text in chunk_passages([knowledge], words)]
    if len(windows) <= 1:
        return knowledge
    return windows[best_chunks(claim, windows, 1)[0]]


def labelled_data(
    rows: Sequence[LabelledTurn],
    config: GroundingDataConfig,
    *,
    answers: bool = True,
) -> tuple[list[GroundingPair], list[GroundedAnswer]]:
    """Pairs (and, for dialogue, answer rows) from labelled rows, split by their passage.

    Pairs are written supported, unsupported, supported, ... within a split (then the rest of
    the larger class), so the trainer's subsampling by consecutive twos stays near balanced.
    Answer rows read the response against its knowledge and ``config.distractors`` other
    knowledge snippets of the same split and source; a one-sentence response carries its label
    as its sentence label, a supported one carries 1 for every sentence, an unsupported
    multi-sentence one none (which sentence fails is not annotated).
    """
    seen: set[tuple[str, str, str]] = set()
    by_split: dict[Split, list[LabelledTurn]] = {}
    for row in rows:
        key = (row.source, _normal(row.knowledge), _normal(row.response))
        if key in seen:  # the same response to the same knowledge, labelled twice: keep one
            continue
        seen.add(key)
        by_split.setdefault(split_of(row.split_key, config), []).append(row)
    pairs: list[GroundingPair] = []
    answer_rows: list[GroundedAnswer] = []
    for split in ("train", "validation", "heldout"):
        chosen = by_split.get(split, [])  # type: ignore[call-overload]
        positives = [_pair(r, split) for r in chosen if r.label == 1]
        negatives = [_pair(r, split) for r in chosen if r.label == 0]
        for index in range(max(len(positives), len(negatives))):
            pairs += positives[index : index + 1] + negatives[index : index + 1]
        if answers and chosen:
            answer_rows += _answers(chosen, split, config)  # type: ignore[arg-type]
    return pairs, answer_rows


def _pair(row: LabelledTurn, split: Split) -> GroundingPair:
    claim = claim_text(row.history, row.response)
    return GroundingPair(
        passage=best_window(row.knowledge, claim),
        claim=claim,
        label=row.label,
        source=row.source,
        split=split,
        passage_id=_hash_id(row.source, row.split_key),
        edit=f"human:{row.origin}",
    )


def _answers(
    rows: Sequence[LabelledTurn], split: Split, config: GroundingDataConfig
) -> list[GroundedAnswer]:
    rng = random.Random(f"{config.seed}/{rows[0].source}/{split}")
    chosen = list(rows)
    if len(chosen) > config.answers_per_source:
        chosen = rng.sample(chosen, k=config.answers_per_source)
    knowledge = sorted({r.knowledge for r in rows})
    out: list[GroundedAnswer] = []
    for row in chosen:
        others = [k for k in knowledge if k != row.knowledge]
        passages = [row.knowledge, *rng.sample(others, k=min(config.distractors, len(others)))]
        rng.shuffle(passages)
        count = len(split_sentences(row.response))
        # Which sentence of an unsupported multi-sentence response fails is not annotated.
        labels = [1] * count if row.label == 1 else ([0] if count == 1 else None)
        out.append(
            GroundedAnswer(
                question=row.history,
                passages=passages,
                answer=row.response,
                label=row.label,
                sentence_labels=labels,
                source=row.source,
                split=split,
                edit=f"human:{row.origin}",
            )
        )
    return out


def read_sources(
    *,
    begin: str | Path | None = None,
    faithdial: str | Path | None = None,
    wice: str | Path | None = None,
    factcheck_gpt: str | Path | None = None,
) -> dict[str, list[LabelledTurn]]:
    """The rows of each given folder, by source name (an absent folder or file: no rows)."""
    readers: dict[str, tuple[Any, str | Path | None]] = {
        "begin_dev": (read_begin_dev, begin),
        "faithdial_audit": (read_faithdial_audit, faithdial),
        "wice_train": (read_wice_train, wice),
        "factcheck_gpt": (read_factcheck_gpt, factcheck_gpt),
    }
    return {name: reader(path) for name, (reader, path) in readers.items() if path is not None}


#: Sources whose rows also make answer rows (a response read against its knowledge); the
#: others give pairs only (their evidence is a whole web page).
DIALOGUE_SOURCES = ("begin_dev", "faithdial_audit")


def labelled_sources(
    rows_by_source: dict[str, list[LabelledTurn]], config: GroundingDataConfig
) -> tuple[list[GroundingPair], list[GroundedAnswer]]:
    """:func:`labelled_data` over every source read by :func:`read_sources`. BEGIN dev and
    FaithDial share knowledge snippets; the split is a function of the snippet's words, so a
    snippet lands in the same split from both."""
    pairs: list[GroundingPair] = []
    answers: list[GroundedAnswer] = []
    for name, rows in rows_by_source.items():
        source_pairs, source_answers = labelled_data(rows, config, answers=name in DIALOGUE_SOURCES)
        pairs += source_pairs
        answers += source_answers
    return pairs, answers


__all__ = [
    "DIALOGUE_SOURCES",
    "LabelledTurn",
    "best_window",
    "blind_key",
    "faithdial_label",
    "labelled_data",
    "labelled_sources",
    "read_begin_dev",
    "read_factcheck_gpt",
    "read_faithdial_audit",
    "read_sources",
    "read_wice_train",
]
