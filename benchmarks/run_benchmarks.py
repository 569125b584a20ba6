"""Run the aligners benchmarks (same as ``aligners bench``) and write bench.json / bench.md.

Usage:
    python benchmarks/run_benchmarks.py --out /tmp/aligners-bench          # full run, ~20 min
    python benchmarks/run_benchmarks.py --quick --only batch,copy          # smoke run
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from aligners.eval.bench import BENCHMARKS, BenchConfig, run_benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--questions", default=None, help="question file (default: HarmfulQA)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a BenchConfig field, e.g. --set copy_texts=4 (repeatable)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    config = BenchConfig.quick() if args.quick else BenchConfig()
    values = config.model_dump()
    if args.questions:
        values["questions"] = args.questions
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in values:
            parser.error(f"--set needs FIELD=VALUE with a BenchConfig field, got {item!r}")
        values[field] = json.loads(value) if value[:1] in "[0123456789" else value
    config = BenchConfig.model_validate(values)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    results = run_benchmarks(names, config, args.out, command=command)
    for name, result in results.items():
        print(f"{name}: {result.get('headline', result.get('error'))}")
    print(f"report: {args.out / 'bench.md'}")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
