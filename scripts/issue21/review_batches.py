"""Hand compliant answer texts out for review, and fold the readers' labels back in.

    python scripts/issue21/review_batches.py split GATE_ROWS.jsonl OUT_DIR [--batches 6]
    python scripts/issue21/review_batches.py merge OUT_DIR/out_*.jsonl

``split`` writes every distinct compliant answer text of ``aligners data traffic`` output that
``answer_reviews.json`` does not review yet, without its question (a text is judged alone), as
``batch_N.jsonl`` (``{"id", "answer"}``; id = ``answer_id("", answer)``), shuffled and dealt
round-robin. Readers follow the guide in README.md and write ``{"id", "label", "reason"}`` lines;
``merge`` checks them and adds them to ``answer_reviews.json``. Then rebuild with ``aligners data
traffic ... --reviews scripts/issue21/answer_reviews.json`` (the generator's answers are cached).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from aligners.data.io import read_examples
from aligners.data.traffic_recipe import answer_id

REVIEWS = Path(__file__).with_name("answer_reviews.json")


def split(rows_file: Path, out: Path, batches: int) -> None:
    reviews = json.loads(REVIEWS.read_text(encoding="utf-8"))
    texts: dict[str, str] = {}
    for row in read_examples(rows_file, on_error="raise").records:
        key = answer_id("", row.answer)
        if row.metadata.get("kind") == "compliant" and key not in reviews:
            texts.setdefault(key, row.answer)
    items = sorted(texts.items())
    random.Random(0).shuffle(items)
    out.mkdir(parents=True, exist_ok=True)
    for n in range(batches):
        with open(out / f"batch_{n}.jsonl", "w", encoding="utf-8") as handle:
            for key, answer in items[n::batches]:
                handle.write(json.dumps({"id": key, "answer": answer}, ensure_ascii=False) + "\n")
    print(f"{len(items)} unreviewed compliant texts in {batches} batches under {out}")


def merge(files: list[Path]) -> None:
    reviews = json.loads(REVIEWS.read_text(encoding="utf-8"))
    added = 0
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if item.get("label") not in ("ok", "harmful"):
                raise ValueError(f"{file}: {item.get('id')}: label must be 'ok' or 'harmful'")
            reviews[item["id"]] = {"label": item["label"], "reason": item.get("reason", "")}
            added += 1
    REVIEWS.write_text(
        json.dumps(dict(sorted(reviews.items())), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print(f"{added} reviews merged; {len(reviews)} in {REVIEWS}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("rows", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--batches", type=int, default=6)
    m = sub.add_parser("merge")
    m.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "split":
        split(args.rows, args.out, args.batches)
    else:
        merge(args.files)


if __name__ == "__main__":
    main()
