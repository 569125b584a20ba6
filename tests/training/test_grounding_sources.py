"""The human-labelled grounding sources (BEGIN dev, FaithDial audit, WiCE train, Factcheck-GPT):
tiny files in each repository's published layout, read, converted and split; test files are
never read; absent folders give no rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from aligners.data.grounding import (
    GroundingDataConfig,
    GroundingPair,
    build_grounding_data,
    read_answers,
    read_pairs,
    split_of,
)
from aligners.data.grounding_sources import (
    LabelledTurn,
    best_window,
    faithdial_label,
    labelled_data,
    read_begin_dev,
    read_factcheck_gpt,
    read_faithdial_audit,
    read_sources,
    read_wice_train,
)
from aligners.training.grounded import _subsample

KNOWLEDGE = [
    "The Eiffel Tower was completed in 1889 and is 330 metres tall.",
    "Louis Armstrong recorded West End Blues in June 1928 in Chicago.",
    "Blue is one of the three primary colours of pigments in painting.",
    "Crayola began with chalk, then crayons, followed later by colored pencils.",
]


def _tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_begin(root: Path) -> Path:
    header = ["model_name", "data_source", "knowledge", "message", "response", "begin_label"]
    _tsv(
        root / "wow" / "begin_dev_wow.tsv",
        header,
        [
            ["t5", "wow", KNOWLEDGE[0], "How tall is it?", "About 330 metres.",
             "Fully attributable"],
            ["gpt2", "wow", KNOWLEDGE[0], "How tall is it?", "It is 450 metres tall.",
             "Not fully attributable"],
            ["doha", "wow", KNOWLEDGE[1], "Any jazz?", "I love jazz!", "Generic"],
        ],
    )  # fmt: skip
    _tsv(
        root / "cmu-dog" / "begin_dev_cmu.tsv",
        header,
        [["ctrl", "cmu", KNOWLEDGE[1], "Who?", "Armstrong recorded it in Chicago in 1928.",
          "Fully attributable"]],
    )  # fmt: skip
    # Blind: never read.
    _tsv(
        root / "wow" / "begin_test_wow.tsv",
        header,
        [["t5", "wow", KNOWLEDGE[2], "Hi", "BLIND TEST ROW", "Fully attributable"]],
    )
    return root


def make_faithdial(root: Path) -> Path:
    audit = root / "data-audit"
    _csv(
        audit / "GPT2" / "gpt2_processed_wow.csv",
        ["knowledge", "history", "gpt2", "begin_label", "vrm_label"],
        [
            [KNOWLEDGE[2], "", "Blue is one of the three primary colours, in painting.",
             "entailment,uncooperative", "edification"],
            [KNOWLEDGE[2], "I like blue.", "Blue, red and green were named by Newton.",
             "entailment,hallucination", "edification"],
            [KNOWLEDGE[2], "I like blue.", "Nice!", "generic", "disclosure"],
        ],
    )  # fmt: skip
    _csv(
        audit / "gold" / "wow.csv",
        ["evidence", "history", "response", "BEGIN", "VRM"],
        [
            # The same knowledge as a BEGIN row (different case and spacing): same split.
            [KNOWLEDGE[0].lower().replace(".", " ."), "Tell me more.",
             "The Eiffel Tower is 330 metres tall and was finished in 1889.", "Entailment",
             "Edification"],
            [KNOWLEDGE[3], "Colours?", "Crayola started with oil paint. It was in 1920.",
             "Partial Hallucination", "Edification"],
            [KNOWLEDGE[3], "Colours?", "I do not know.", "Uncooperative", "Disclosure"],
            [KNOWLEDGE[3], "Colours?", "Crayons came after chalk.", "", ""],
        ],
    )  # fmt: skip
    return root


def make_wice(root: Path) -> Path:
    folder = root / "data" / "entailment_retrieval" / "claim"
    folder.mkdir(parents=True)
    filler = [f"Filler sentence number {i} says nothing about the topic at all." for i in range(30)]
    evidence = [*filler[:10], "Irene Hervey appeared in over fifty films.", *filler[10:]]
    far = [*filler[:2], "Irene Hervey was born in 1909.", *filler[2:], "She died in 1998."]
    rows = [
        {"label": "supported", "supporting_sentences": [[10]], "evidence": evidence,
         "claim": "Irene Hervey appeared in over fifty films.",
         "meta": {"id": "train00001", "claim_title": "Irene Hervey"}},
        # Supported only by two sentences no one window holds: left out.
        {"label": "supported", "supporting_sentences": [[2, 31]], "evidence": far,
         "claim": "Irene Hervey was born in 1909 and died in 1998.",
         "meta": {"id": "train00002", "claim_title": "Irene Hervey"}},
        {"label": "partially_supported", "supporting_sentences": [[10]], "evidence": evidence,
         "claim": "Irene Hervey appeared in over fifty films and ten operas.",
         "meta": {"id": "train00003", "claim_title": "Irene Hervey"}},
        {"label": "not_supported", "supporting_sentences": [], "evidence": evidence,
         "claim": "Irene Hervey won an Academy Award.",
         "meta": {"id": "train00004", "claim_title": "Other Page"}},
    ]  # fmt: skip
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "test.jsonl").write_text(json.dumps(rows[0] | {"claim": "BLIND"}) + "\n")
    return root


def make_factcheck(root: Path) -> Path:
    folder = root / "subtasks"
    folder.mkdir(parents=True)
    rows = [
        {"claim": "Douglas was the oldest justice in 1980.", "evidence": "Douglas retired in "
         "1975.", "stance": "refute"},
        {"claim": "MBZUAI is in Abu Dhabi.", "evidence": "MBZUAI, in Abu Dhabi, opened in 2019.",
         "stance": "completely-support"},
        {"claim": "MBZUAI opened in 2019 with 100 students.", "evidence": "MBZUAI opened in "
         "2019.", "stance": "partially-support"},
        {"claim": "MBZUAI is in Abu Dhabi.", "evidence": "Stock prices fell.",
         "stance": "irrelevant"},
        {"claim": "Odd stance.", "evidence": "Something.", "stance": "unknown"},
    ]  # fmt: skip
    (folder / "subtask3_claim_evidence_stance.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )
    return root


def test_begin_dev_reads_dev_files_only_and_drops_generic(tmp_path: Path) -> None:
    rows = read_begin_dev(make_begin(tmp_path / "BEGIN-dataset"))
    assert [(r.response, r.label, r.origin) for r in rows] == [
        ("About 330 metres.", 1, "wow/t5"),
        ("It is 450 metres tall.", 0, "wow/gpt2"),
        ("Armstrong recorded it in Chicago in 1928.", 1, "cmu/ctrl"),
    ]
    assert rows[0].history == "How tall is it?" and rows[0].knowledge == KNOWLEDGE[0]
    assert all("BLIND" not in r.response for r in rows)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("entailment", 1),
        ("Entailment", 1),
        ("entailment,uncooperative", 1),
        ("entailment. uncooperative", 1),
        ("entailmentt,uncooperative", 1),
        ("entailment,hallucination", 0),
        ("Partial Hallucination", 0),
        ("hallucinated", 0),
        ("generic", None),
        ("Uncooperative", None),
        ("", None),
    ],
)
def test_faithdial_labels(value: str, label: int | None) -> None:
    assert faithdial_label(value) == label


def test_faithdial_audit_reads_model_and_gold_files(tmp_path: Path) -> None:
    root = make_faithdial(tmp_path / "FaithDial")
    rows = read_faithdial_audit(root)
    assert [(r.label, r.origin) for r in rows] == [
        (1, "GPT2/gpt2_processed_wow"),
        (0, "GPT2/gpt2_processed_wow"),
        (1, "gold/wow"),
        (0, "gold/wow"),
    ]
    assert rows[0].response == "Blue is one of the three primary colours, in painting."
    # The data-audit folder itself works too.
    assert read_faithdial_audit(root / "data-audit") == rows


def test_wice_train_keeps_supported_claims_only_where_one_window_holds_their_support(
    tmp_path: Path,
) -> None:
    rows = read_wice_train(make_wice(tmp_path / "wice"))
    assert [(r.origin, r.label) for r in rows] == [
        ("train00001", 1),
        ("train00003", 0),
        ("train00004", 0),
    ]
    assert "Irene Hervey appeared in over fifty films." in rows[0].knowledge
    assert len(rows[0].knowledge.split()) <= 60 + 12
    assert rows[0].split_key == rows[1].split_key  # split by the cited article's title
    # Only train.jsonl: the test file given directly is refused.
    assert read_wice_train(tmp_path / "wice/data/entailment_retrieval/claim/test.jsonl") == []


def test_factcheck_gpt_stances(tmp_path: Path) -> None:
    rows = read_factcheck_gpt(make_factcheck(tmp_path / "Factcheck-GPT"))
    assert [(r.origin, r.label) for r in rows] == [
        ("refute", 0),
        ("completely-support", 1),
        ("partially-support", 0),
        ("irrelevant", 0),
    ]
    # One claim against two evidence passages: two pairs, split together by the claim.
    pairs, answers = labelled_data(rows, GroundingDataConfig(), answers=False)
    assert len(pairs) == 4 and answers == []
    abu = [p for p in pairs if p.claim == "MBZUAI is in Abu Dhabi."]
    assert sorted(p.label for p in abu) == [0, 1] and len({p.split for p in abu}) == 1


def test_absent_folders_give_no_rows(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert read_begin_dev(missing) == []
    assert read_faithdial_audit(missing) == []
    assert read_wice_train(missing) == []
    assert read_factcheck_gpt(missing) == []
    assert read_sources(begin=missing, wice=None) == {"begin_dev": []}


def test_conversion_splits_by_knowledge_and_interleaves_labels(tmp_path: Path) -> None:
    begin = read_begin_dev(make_begin(tmp_path / "BEGIN-dataset"))
    faithdial = read_faithdial_audit(make_faithdial(tmp_path / "FaithDial"))
    config = GroundingDataConfig(heldout_fraction=0.3, validation_fraction=0.3, distractors=1)
    pairs, answers = labelled_data(begin + faithdial, config)
    assert len(pairs) == len(begin) + len(faithdial)
    # One split per knowledge snippet, across both sources (BEGIN's and FaithDial's copy of
    # the Eiffel Tower snippet differ in case and spacing).
    splits: dict[str, set[str]] = {}
    for row in begin + faithdial:
        splits.setdefault(row.split_key, set()).add(split_of(row.split_key, config))
    assert all(len(s) == 1 for s in splits.values())
    assert begin[0].split_key == faithdial[2].split_key
    for pair in pairs:
        assert pair.edit.startswith("human:")
        assert pair.split == split_of(
            next(r.split_key for r in begin + faithdial if r.response in pair.claim), config
        )
    # Within a split, supported and unsupported alternate while both remain.
    for split in ("train", "validation", "heldout"):
        labels = [p.label for p in pairs if p.split == split]
        head = labels[: 2 * min(labels.count(0), labels.count(1))]
        assert head == [1, 0] * (len(head) // 2)
    by_answer = {a.answer: a for a in answers}
    one = by_answer["It is 450 metres tall."]
    assert (one.label, one.sentence_labels, one.question) == (0, [0], "How tall is it?")
    assert KNOWLEDGE[0] in one.passages and len(one.passages) <= 2
    two = by_answer["Crayola started with oil paint. It was in 1920."]
    assert (two.label, two.sentence_labels) == (0, None)  # which sentence fails: unknown
    good = by_answer["The Eiffel Tower is 330 metres tall and was finished in 1889."]
    assert good.sentence_labels == [1]
    # Short responses are read with their previous turn, as the inspector reads them.
    short = next(p for p in pairs if "About 330 metres." in p.claim and p.label == 1)
    assert short.claim == "How tall is it? About 330 metres."


def test_duplicates_are_kept_once_and_long_knowledge_is_windowed() -> None:
    long = " ".join(f"Sentence {i} is about the weather in town number {i}." for i in range(40))
    claim = "Sentence 33 is about the weather in town number 33."
    window = best_window(long, claim)
    assert claim in window and len(window.split()) <= 60
    row = LabelledTurn(
        source="begin_dev",
        knowledge=long,
        response=claim,
        label=1,
        origin="x",
        split_key="k",
    )
    pairs, answers = labelled_data([row, row], GroundingDataConfig())
    assert len(pairs) == 1 and pairs[0].passage == window
    assert answers[0].passages == [long]  # answer rows keep the whole knowledge


def test_build_with_labelled_sets_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = build_grounding_data(
        out,
        halueval_wheel=None,
        data_dir=None,
        labelled={
            "begin": make_begin(tmp_path / "BEGIN-dataset"),
            "faithdial": make_faithdial(tmp_path / "FaithDial"),
            "wice": make_wice(tmp_path / "wice"),
            "factcheck_gpt": tmp_path / "absent",
        },
    )
    assert summary["labelled_rows_read"] == {
        "begin_dev": 3,
        "faithdial_audit": 4,
        "wice_train": 3,
        "factcheck_gpt": 0,
    }
    pairs = read_pairs(out / "pairs.jsonl")
    assert {p.source for p in pairs} == {"begin_dev", "faithdial_audit", "wice_train"}
    answers = read_answers(out / "answers.jsonl")
    assert {a.source for a in answers} <= {"begin_dev", "faithdial_audit"}  # WiCE: pairs only
    held = [json.loads(line) for line in (out / "heldout_answers.jsonl").read_text().splitlines()]
    assert len(held) == sum(a.split == "heldout" for a in answers)
    with pytest.raises(ValueError, match="labelled set"):
        build_grounding_data(tmp_path / "x", halueval_wheel=None, data_dir=None, labelled={})


def test_keep_sources_are_trained_on_whole() -> None:
    def pair(source: str, label: int, index: int) -> GroundingPair:
        return GroundingPair(
            passage=f"p{index}",
            claim=f"c{index}",
            label=label,
            source=source,
            split="train",
            passage_id=str(index),
            edit="copy",
        )

    big = [pair("halueval_qa", int(i % 2 == 0), i) for i in range(100)]
    small = [pair("begin_dev", 1, 1000 + i) for i in range(6)]
    chosen = _subsample(big + small, 20, 0, ["begin_dev"])
    assert len(chosen) == 20 and chosen[:6] == small
    rest = chosen[6:]
    assert [p.label for p in rest] == [1, 0] * 7  # twins stay together
    # Without kept sources the sampling is the one it always was.
    assert _subsample(big, 20, 0) == _subsample(big, 20, 0, ())


def test_cli_builds_from_labelled_sets_and_checks_their_paths(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aligners.cli.main import app

    begin = make_begin(tmp_path / "BEGIN-dataset")
    faithdial = make_faithdial(tmp_path / "FaithDial")
    out = tmp_path / "out"
    args = ["data", "grounding", "--no-synthetic", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--begin", str(begin), "--faithdial", str(faithdial)])
    assert result.exit_code == 0, result.output
    assert '"begin_dev": 3' in result.output and '"faithdial_audit": 4' in result.output
    assert {p.source for p in read_pairs(out / "pairs.jsonl")} == {"begin_dev", "faithdial_audit"}
    args[-1] = str(tmp_path / "out2")
    missing = CliRunner().invoke(app, [*args, "--wice", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and not (tmp_path / "out2").exists()  # a usage error


def test_pairs_a_blind_set_holds_are_dropped(tmp_path: Path) -> None:
    from aligners.data.grounding_blind import BLIND_OVERLAP
    from aligners.data.grounding_sources import blind_key

    begin = make_begin(tmp_path / "BEGIN-dataset")
    faithdial = make_faithdial(tmp_path / "FaithDial")
    # Case, spacing and punctuation do not hide a pair.
    held = blind_key(KNOWLEDGE[0].upper(), "about  330 metres")
    assert [r.response for r in read_begin_dev(begin, exclude={held})] == [
        "It is 450 metres tall.",
        "Armstrong recorded it in Chicago in 1928.",
    ]
    gold = blind_key(KNOWLEDGE[3], "Crayola started with oil paint. It was in 1920.")
    assert len(read_faithdial_audit(faithdial, exclude={gold})) == 3
    # The shipped list (hashes, 16 hex digits) is the default.
    assert BLIND_OVERLAP and all(len(k) == 16 for k in BLIND_OVERLAP)
    assert len(read_begin_dev(begin)) == len(read_begin_dev(begin, exclude=()))
