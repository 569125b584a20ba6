"""Which rows of the labelled grounding sources also occur in a blind evaluation set?

Writes ``shared/aligners/data/grounding_blind.py``: the hashes of the (knowledge, response)
pairs of BEGIN dev and FaithDial's audit files that a blind set holds too, which the readers
of ``aligners.data.grounding_sources`` drop. The blind files are read only for this (their
texts and labels go nowhere else):

    python scripts/issue22/blind_overlap.py --begin BEGIN_CLONE --faithdial FAITHDIAL_CLONE \
        BLIND.tsv ...

A blind file is a TSV with a header naming its knowledge column (``knowledge`` or
``evidence``) and ``response``: BEGIN's test files (``*/begin_test_*.tsv``) and the 2021
release's ``dev_05_24_21.tsv`` (TRUE's BEGIN) and ``test_05_24_21.tsv``, from the repository's
history (``git show 6f88199:dev_05_24_21.tsv``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from aligners.data.grounding_sources import (
    blind_key,
    read_begin_dev,
    read_faithdial_audit,
)

TARGET = Path(__file__).resolve().parents[2] / "shared/aligners/data/grounding_blind.py"


def blind_keys(files: list[Path]) -> set[str]:
    keys: set[str] = set()
    for file in files:
        with file.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                knowledge = row.get("knowledge") or row.get("evidence") or ""
                keys.add(blind_key(knowledge, row.get("response") or ""))
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blind", type=Path, nargs="+")
    parser.add_argument("--begin", type=Path, required=True)
    parser.add_argument("--faithdial", type=Path, required=True)
    args = parser.parse_args()
    blind = blind_keys(args.blind)
    rows = read_begin_dev(args.begin, exclude=()) + read_faithdial_audit(args.faithdial, exclude=())
    found = sorted({k for r in rows if (k := blind_key(r.knowledge, r.response)) in blind})
    lines = [
        '"""Hashes (:func:`aligners.data.grounding_sources.blind_key`) of the (knowledge,',
        "response) pairs of BEGIN dev and FaithDial's audit files that a blind evaluation set",
        "holds too (BEGIN test, TRUE's BEGIN), dropped by the readers. Written by",
        "scripts/issue22/blind_overlap.py from:",
        *[f"{p.name}" for p in args.blind],
        '"""',
        "",
        "BLIND_OVERLAP: frozenset[str] = frozenset(",
        "    {",
        *[f'        "{k}",' for k in found],
        "    }",
        ")",
        "",
    ]
    TARGET.write_text("\n".join(lines), encoding="utf-8")
    print(f"{len(found)} of {len(rows)} rows overlap {len(blind)} blind pairs -> {TARGET}")


if __name__ == "__main__":
    main()
