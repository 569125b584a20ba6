"""Question files (HarmfulQA JSON, the IBM CSVs, JSONL) and files of existing answers."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

Sampling = Literal["first", "random", "stratified"]
QUESTION_KEYS = ("question", "input", "prompt", "instruction")
# "original" lets the examples.jsonl of an earlier run be aligned and judged again.
ANSWER_KEYS = ("answer", "original", "original_output", "response")


class EvalItem(BaseModel):
    """One question to evaluate, with its category and, when given, an existing answer."""

    id: str
    question: str
    category: str | None = None
    subcategory: str | None = None
    answer: str | None = None


def _pick(row: dict[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str):
            return value
    return None


def _rows_from_dicts(
    rows: Sequence[Any], source: str, default_category: str | None
) -> list[EvalItem]:
    items = []
    for number, row in enumerate(rows, 1):
        if isinstance(row, str):
            row = {"question": row}
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {number} is {type(row).__name__}, expected an object")
        question = _pick(row, QUESTION_KEYS)
        if question is None or not question.strip():
            raise ValueError(
                f"{source}: row {number} has no question (looked for {', '.join(QUESTION_KEYS)})"
            )
        category = row.get("category", default_category)
        items.append(
            EvalItem(
                id=str(row.get("id", f"{Path(source).stem}-{number}")),
                question=question,
                category=None if category is None else str(category),
                subcategory=None if row.get("subcategory") is None else str(row["subcategory"]),
                answer=_pick(row, ANSWER_KEYS),
            )
        )
    return items


def _read_json(path: Path) -> list[EvalItem]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        # HarmfulQA: {topic: {subtopic: [question, ...]}}; topic becomes the category.
        items = []
        for topic, subtopics in data.items():
            if not isinstance(subtopics, dict):
                raise ValueError(
                    f"{path}: expected {{topic: {{subtopic: [questions]}}}}, topic {topic!r} holds "
                    f"{type(subtopics).__name__}"
                )
            for subtopic, questions in subtopics.items():
                if not isinstance(questions, list):
                    raise ValueError(f"{path}: {topic!r}/{subtopic!r} is not a list of questions")
                for number, question in enumerate(questions, 1):
                    if not isinstance(question, str) or not question.strip():
                        raise ValueError(
                            f"{path}: {topic!r}/{subtopic!r} #{number} is not a question"
                        )
                    items.append(
                        EvalItem(
                            id=f"{topic}/{subtopic}/{number}",
                            question=question,
                            category=topic,
                            subcategory=subtopic,
                        )
                    )
        return items
    if isinstance(data, list):
        return _rows_from_dicts(data, str(path), None)
    raise ValueError(f"{path}: expected a JSON object or list, got {type(data).__name__}")


def _read_jsonl(path: Path) -> list[EvalItem]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    return _rows_from_dicts(rows, str(path), None)


def _read_csv(path: Path) -> list[EvalItem]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if not any(k in fields for k in QUESTION_KEYS):
            raise ValueError(
                f"{path}: no question column (looked for {', '.join(QUESTION_KEYS)}; has {fields})"
            )
        rows = list(reader)
    # Files without a category column (the IBM CSVs: one criterion per file) are their own category.
    return _rows_from_dicts(rows, str(path), None if "category" in fields else path.stem)


def read_items(path: str | Path) -> list[EvalItem]:
    """Every question (and answer, if present) of a ``.json``, ``.jsonl`` or ``.csv`` file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"question file {str(path)!r} does not exist")
    suffix = file.suffix.lower()
    if suffix == ".json":
        items = _read_json(file)
    elif suffix == ".jsonl":
        items = _read_jsonl(file)
    elif suffix == ".csv":
        items = _read_csv(file)
    else:
        raise ValueError(
            f"{path}: unsupported question file type {suffix!r} (use .json, .jsonl or .csv)"
        )
    if not items:
        raise ValueError(f"{path}: holds no questions")
    return items


def sample_items(
    items: Sequence[EvalItem],
    limit: int | None,
    *,
    sampling: Sampling = "stratified",
    seed: int = 0,
) -> list[EvalItem]:
    """Up to ``limit`` items: the first ones, a random sample, or round-robin over categories.

    ``stratified`` shuffles each category with ``seed`` and takes one from each in turn, so 50
    HarmfulQA questions cover its 10 topics 5 times each.
    """
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    pool = list(items)
    if limit is None or limit >= len(pool):
        return pool
    if sampling == "first":
        return pool[:limit]
    rng = random.Random(seed)
    if sampling == "random":
        return rng.sample(pool, limit)
    if sampling != "stratified":
        raise ValueError(f"sampling must be first, random or stratified, got {sampling!r}")
    groups: dict[str | None, list[EvalItem]] = {}
    for item in pool:
        groups.setdefault(item.category, []).append(item)
    for group in groups.values():
        rng.shuffle(group)
    chosen: list[EvalItem] = []
    depth = 0
    while len(chosen) < limit:
        for group in groups.values():
            if depth < len(group) and len(chosen) < limit:
                chosen.append(group[depth])
        depth += 1
    return chosen


def load_questions(
    paths: str | Path | Sequence[str | Path],
    *,
    limit: int | None = None,
    sampling: Sampling = "stratified",
    seed: int = 0,
) -> list[EvalItem]:
    """Read one or more question files and sample ``limit`` items from them all."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no question file given")
    items = [item for path in paths for item in read_items(path)]
    return sample_items(items, limit, sampling=sampling, seed=seed)
