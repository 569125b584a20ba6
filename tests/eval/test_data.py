"""Question files: HarmfulQA JSON, CSV with an input column, JSONL with answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from aligners.eval import load_questions, read_items, sample_items


def write_harmfulqa(path: Path, topics: int = 3, per_subtopic: int = 4) -> Path:
    data = {
        f"Topic {t}": {
            f"Sub {t}.{s}": [f"Question {t}.{s}.{q}?" for q in range(per_subtopic)]
            for s in range(2)
        }
        for t in range(topics)
    }
    path.write_text(json.dumps(data))
    return path


def test_harmfulqa_topics_become_categories(tmp_path: Path) -> None:
    items = read_items(write_harmfulqa(tmp_path / "h.json"))
    assert len(items) == 3 * 2 * 4
    assert items[0].category == "Topic 0" and items[0].subcategory == "Sub 0.0"
    assert len({i.id for i in items}) == len(items)


def test_stratified_sampling_round_robins_categories(tmp_path: Path) -> None:
    items = load_questions(write_harmfulqa(tmp_path / "h.json"), limit=6, seed=1)
    assert Counter(i.category for i in items) == {"Topic 0": 2, "Topic 1": 2, "Topic 2": 2}
    again = load_questions(tmp_path / "h.json", limit=6, seed=1)
    assert [i.id for i in again] == [i.id for i in items]
    other = load_questions(tmp_path / "h.json", limit=6, seed=2)
    assert [i.id for i in other] != [i.id for i in items]
    assert [i.id for i in sample_items(items, 2, sampling="first")] == [i.id for i in items[:2]]


def test_csv_without_category_column_uses_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "ibm_ethical_questions.csv"
    path.write_text('input\n"Is it ok to lie, sometimes?"\nHow do I bake bread?\n')
    items = read_items(path)
    assert [i.question for i in items] == ["Is it ok to lie, sometimes?", "How do I bake bread?"]
    assert {i.category for i in items} == {"ibm_ethical_questions"}


def test_jsonl_carries_answers_and_categories(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"question": "Q1?", "answer": "A1", "category": "x"},
        {"instruction": "Q2?", "original_output": "A2"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    items = read_items(path)
    assert [(i.question, i.answer, i.category) for i in items] == [
        ("Q1?", "A1", "x"),
        ("Q2?", "A2", None),
    ]


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_items(tmp_path / "missing.json")
    bad_csv = tmp_path / "q.csv"
    bad_csv.write_text("text\nhello\n")
    with pytest.raises(ValueError, match="no question column"):
        read_items(bad_csv)
    bad_jsonl = tmp_path / "q.jsonl"
    bad_jsonl.write_text('{"question": "ok?"}\n{not json}\n')
    with pytest.raises(ValueError, match="q.jsonl:2: not valid JSON"):
        read_items(bad_jsonl)
    no_question = tmp_path / "n.jsonl"
    no_question.write_text('{"answer": "x"}\n')
    with pytest.raises(ValueError, match="row 1 has no question"):
        read_items(no_question)
    other = tmp_path / "q.txt"
    other.write_text("hi")
    with pytest.raises(ValueError, match="unsupported question file type"):
        read_items(other)
    with pytest.raises(ValueError, match="limit must be positive"):
        load_questions(write_harmfulqa(tmp_path / "h.json"), limit=0)


def test_real_harmfulqa_50_cover_all_ten_topics(shared_data: Path) -> None:
    items = load_questions(shared_data / "prompts" / "harmfulqa.json", limit=50)
    assert len(items) == 50
    assert set(Counter(i.category for i in items).values()) == {5}
