"""A copy of a traffic folder with another request set, for ``combination_cv.py``.

    python scripts/issue21/request_sets.py T OUT --wheels WHEELS --per-pool 6000 [--howto 1000]

OUT links every file of T but ``requests.jsonl``, which is rebuilt by
:func:`aligners.data.traffic_recipe.request_rows` with ``--per-pool`` ordinary (IBM) and AlpacaEval
requests per pool (the recipe uses 1500), plus ``--howto`` more IBM questions opening with "How
do I / How can I / What's the best way to", the phrasing most harmful requests use. The results
(docs/training.md, "The combination"): no gain in family-out CV.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from aligners.data.safety import ibm_pool
from aligners.data.traffic_recipe import pair_requests, request_rows
from aligners.data.wheel_sources import wheel_sources

HOWTO = re.compile(
    r"^(how (do|can|should|would|could) (i|you|we|one)|what('s| is) the best way to|how to)\b",
    re.IGNORECASE,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traffic", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-pool", type=int, default=1500)
    parser.add_argument("--howto", type=int, default=0)
    args = parser.parse_args()
    sources = wheel_sources(args.wheels)
    extra = sources.harmbench + sources.edgy + sources.donotanswer + pair_requests(sources.pairs)
    rows = request_rows(args.data_dir, seed=0, per_pool=args.per_pool, extra=extra)
    if args.howto:
        have = {str(r["request"]) for r in rows}
        _, ibm = ibm_pool(args.data_dir)
        howto = [r for r in ibm if HOWTO.match(r.text) and r.text not in have]
        more = random.Random("howto").sample(howto, min(args.howto, len(howto)))
        rows = request_rows(args.data_dir, seed=0, per_pool=args.per_pool, extra=extra + more)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.traffic.iterdir():
        link = args.out / path.name
        if path.name != "requests.jsonl" and not link.exists():
            link.symlink_to(path.resolve())
    with open(args.out / "requests.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} requests -> {args.out / 'requests.jsonl'}")


if __name__ == "__main__":
    main()
