"""Should the grounded inspector read the question (a dialogue's history) as evidence too?

Scores every non-trivial answer sentence of an ``aligners data grounding`` folder's answers with
the shipped inspector under five evidence settings, then compares answer-level numbers per
source and split at the shipped threshold (MODEL_CARD.md, "Tried, not shipped: the dialogue
history as evidence"):

* ``base``: the passages (the shipped behaviour);
* ``plus_full`` / ``plus_decl``: the passages and the question as one more passage (all of it,
  or only its sentences that do not end in "?": a question asserts nothing);
* ``max_full`` / ``max_decl`` (optionally ``gate``): a sentence's score is the better of its
  score against the passages and its score against the question alone (read with an empty
  question), the latter only where at least ``gate`` of its content words are in the question.

    python scripts/issue22/history_evidence.py DATA --splits train,validation --scores S.pkl
    python scripts/issue22/history_evidence.py DATA --scores S.pkl   # report only, S.pkl exists

Only splits named are read; held-out rows are not for choosing.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aligners.inspector.grounded import GroundedInspector
from aligners.sources import STOPWORDS, claim_words, split_sentences
from aligners.training.metrics import auroc

DIALOGUE = ("begin_dev", "faithdial_audit")
VARIANTS: list[tuple[str, float | None]] = [
    ("base", None),
    ("plus_full", None),
    ("plus_decl", None),
    ("max_full", None),
    ("max_decl", None),
    ("max_full", 0.5),
    ("max_decl", 0.5),
    ("max_full", 0.75),
    ("max_decl", 0.75),
]


def declarative(question: str) -> str:
    """The question's sentences that do not end in a question mark."""
    return " ".join(s.text for s in split_sentences(question) if not s.text.rstrip().endswith("?"))


def history_share(sentence: str, question: str) -> float:
    """The share of the sentence's content words that the question holds."""
    words = set(claim_words(sentence)) - STOPWORDS
    asked = set(claim_words(question))
    return sum(w in asked for w in words) / len(words) if words else 0.0


def score(data: Path, splits: set[str], out: Path) -> dict[str, Any]:
    """Per-sentence scores of every answer of ``splits`` under each evidence setting."""
    inspector = GroundedInspector.from_pretrained()
    rows = [json.loads(line) for line in (data / "answers.jsonl").open(encoding="utf-8")]
    rows = [r for r in rows if r["split"] in splits]
    questions = [r["question"] for r in rows]
    answers = [r["answer"] for r in rows]
    passages = [r["passages"] for r in rows]
    statements = [declarative(q) for q in questions]
    result: dict[str, Any] = {
        "rows": [
            {k: r[k] for k in ("source", "split", "label", "sentence_labels", "question", "answer")}
            for r in rows
        ],
        "sentences": [[s.text for s in split_sentences(a)] for a in answers],
    }

    def run(qs: list[str], contexts: list[list[str] | None]) -> list[list[Any]]:
        keep = [i for i, c in enumerate(contexts) if c is not None]
        scored: list[list[Any]] = [[None] * len(s) for s in result["sentences"]]
        for start in range(0, len(keep), 16):
            batch = keep[start : start + 16]
            evidence = inspector.evidence(
                [qs[i] for i in batch], [answers[i] for i in batch], [contexts[i] for i in batch]
            )
            for i, sentences in zip(batch, evidence):
                scored[i] = [
                    None if e is None else (inspector.sentence_score(e, m), e)
                    for _, _, e, m in sentences
                ]
        return scored

    blank = [""] * len(rows)
    settings: dict[str, tuple[list[str], list[list[str] | None]]] = {
        "hist_full": (blank, [[q] if q.strip() else None for q in questions]),
        "hist_decl": (blank, [[d] if d.strip() else None for d in statements]),
        "base": (questions, list(passages)),
        "plus_decl": (
            questions,
            [p + [d] if d.strip() else p for p, d in zip(passages, statements)],
        ),
        "plus_full": (questions, [p + [q] for p, q in zip(passages, questions)]),
    }
    for name, (qs, contexts) in settings.items():
        began = time.perf_counter()
        result[name] = run(qs, contexts)
        print(f"{name}: {time.perf_counter() - began:.0f} s", flush=True)
        out.write_bytes(pickle.dumps(result))
    return result


def answer_scores(result: dict[str, Any], variant: str, gate: float | None) -> list[float]:
    """Each answer's score (its least supported sentence's) under one variant."""
    scores = []
    for i, row in enumerate(result["rows"]):
        sentence_scores = []
        for j, base in enumerate(result["base"][i]):
            if base is None:
                continue
            value = base[0]
            if variant.startswith("plus_"):
                value = result[variant][i][j][0]
            elif variant.startswith("max_"):
                alone = result["hist_" + variant[4:]][i][j]
                text = result["sentences"][i][j]
                if alone is not None and (
                    gate is None or history_share(text, row["question"]) >= gate
                ):
                    value = max(value, alone[0])
            sentence_scores.append(value)
        scores.append(min(sentence_scores, default=1.0))
    return scores


def report(result: dict[str, Any], threshold: float) -> None:
    rows = result["rows"]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        kind = "dialogue (BEGIN dev + FaithDial)" if row["source"] in DIALOGUE else "non-dialogue"
        split = row["split"]
        for key in (
            f"{row['source']}/{split}",
            f"{row['source']}/all",
            f"{kind}/{split}",
            f"{kind}/all",
        ):
            groups[key].append(i)
    scores = {v: answer_scores(result, *v) for v in VARIANTS}

    def rates(idx: list[int], values: list[float], t: float) -> tuple[float, float]:
        pos = [values[i] for i in idx if rows[i]["label"] == 1]
        neg = [values[i] for i in idx if rows[i]["label"] == 0]
        return sum(x >= t for x in pos) / len(pos), sum(x < t for x in neg) / len(neg)

    for name in sorted(groups):
        idx = groups[name]
        labels = [rows[i]["label"] for i in idx]
        print(f"== {name}: n={len(idx)} ({sum(labels)} grounded)")
        for variant in VARIANTS:
            values = scores[variant]
            unchanged, flagged = rates(idx, values, threshold)
            area = auroc(labels, [values[i] for i in idx])
            print(
                f"  {variant[0]:9s} gate={variant[1]!s:4s}  AUROC {area:.3f}"
                f"  bal. acc. {(unchanged + flagged) / 2:.3f}  grounded unchanged {unchanged:.3f}"
                f"  ungrounded flagged {flagged:.3f}"
            )
    base = scores[("base", None)]
    dialogue = groups["dialogue (BEGIN dev + FaithDial)/all"]
    print("Each variant against the shipped scores at the threshold giving its share unchanged:")
    for variant in VARIANTS[1:]:
        unchanged, flagged = rates(dialogue, scores[variant], threshold)
        pos = sorted(base[i] for i in dialogue if rows[i]["label"] == 1)
        k = round((1 - unchanged) * len(pos))
        t = pos[k] if k < len(pos) else 1.0
        base_unchanged, base_flagged = rates(dialogue, base, t)
        print(
            f"  {variant}: {unchanged:.3f} unchanged, {flagged:.3f} flagged; shipped at {t:.3f}: "
            f"{base_unchanged:.3f} unchanged, {base_flagged:.3f} flagged"
        )
    rng = random.Random(0)
    for variant in VARIANTS[1:]:
        deltas = []
        for _ in range(1000):
            sample = [rng.choice(dialogue) for _ in dialogue]
            labels = [rows[i]["label"] for i in sample]
            deltas.append(
                auroc(labels, [scores[variant][i] for i in sample])
                - auroc(labels, [base[i] for i in sample])
            )
        deltas.sort()
        low, high = deltas[25], deltas[974]
        print(f"  dialogue AUROC change {variant}: 95 % bootstrap {low:+.4f} .. {high:+.4f}")
    print("HaluEval QA: ungrounded answers that start passing / grounded ones newly flagged:")
    for variant in VARIANTS[1:]:
        values = scores[variant]
        qa = [i for i, r in enumerate(rows) if r["source"] == "halueval_qa"]
        up = [i for i in qa if rows[i]["label"] == 0 and base[i] < threshold <= values[i]]
        down = [i for i in qa if rows[i]["label"] == 1 and values[i] < threshold <= base[i]]
        print(f"  {variant}: {len(up)} / {len(down)} {[rows[i]['answer'][:60] for i in up][:3]}")
    print("Sentence level, labelled dialogue sentences: AUROC of the history signals alone")
    for split in sorted({r["split"] for r in rows}):
        labels, alone, share = [], [], []
        for i, row in enumerate(rows):
            marks = row["sentence_labels"]
            if row["source"] not in DIALOGUE or row["split"] != split or not marks:
                continue
            if len(marks) != len(result["base"][i]):
                continue
            for j, base_sentence in enumerate(result["base"][i]):
                if base_sentence is None:
                    continue
                labels.append(marks[j])
                hist = result["hist_full"][i][j]
                alone.append(hist[0] if hist else 0.0)
                share.append(history_share(result["sentences"][i][j], row["question"]))
        if labels and 0 < sum(labels) < len(labels):
            print(
                f"  {split}: {len(labels)} sentences ({sum(labels)} supported): score against "
                f"the history {auroc(labels, alone):.3f}, share of words from it "
                f"{auroc(labels, share):.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="An `aligners data grounding` folder.")
    parser.add_argument("--splits", default="", help="Score these splits (comma separated).")
    parser.add_argument("--scores", type=Path, required=True, help="The scores' pickle.")
    parser.add_argument("--threshold", type=float, default=0.636)
    args = parser.parse_args()
    if args.splits:
        result = score(args.data, set(args.splits.split(",")), args.scores)
    else:
        result = pickle.loads(args.scores.read_bytes())
    report(result, args.threshold)


if __name__ == "__main__":
    main()
