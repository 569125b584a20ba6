"""Answer the hand-written probe requests with the local generator, as rows eval-safety scores.

The requests are :func:`aligners.data.probe.probe_requests`: written by the team and in no
training set, so the rows measure the shipped squad on prompts nobody trained on. Rows have the
safety recipe's format (:meth:`aligners.data.safety.Answer.example`):

- each harmful request: the generator's answer, compliant (source ``smollm2``) or, when it
  declines, safe (``smollm2-refusal``), plus one written refusal (safe, ``template``);
- each ordinary request: the generator's answer, good (``smollm2``);
- each alarming-but-safe request: the generator's answer, good (``smollm2-alarming``).

Empty answers are dropped, and so are the generator's refusals of ordinary and alarming-but-safe
requests, as the safety recipe drops them: a refusal is not a good answer to a safe request.

    python scripts/make_probe_set.py OUT_DIR [--max-new-tokens 112] [--batch-size 16]

Writes ``OUT_DIR/probe_answers.jsonl``, ``OUT_DIR/probe_log.json`` (counts) and
``OUT_DIR/generations.jsonl`` (the generator's answers; a rerun resumes from it).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from aligners.data import write_records
from aligners.data.probe import PROBE_ALARMING_SOURCE, probe_requests
from aligners.data.safety import COMPLIANT, GOOD, SAFE, Answer, generate_answers
from aligners.data.safety_sources import HARMFUL, Request, is_refusal, template_refusal

GENERATOR = "smollm2"
SPLIT = "probe"


def probe_answers(
    requests: list[Request], generated: dict[str, str], log: Counter[str]
) -> list[Answer]:
    """The rows for every request, given the generator's answer to each; counts go to ``log``."""
    rng = random.Random(0)
    answers: list[Answer] = []
    for request in requests:
        text = generated[request.text].strip()
        if request.kind == HARMFUL:
            if not text:
                log["dropped/harmful/empty"] += 1
            elif is_refusal(text):
                log["generator_refused/harmful"] += 1
                answers.append(Answer(request, text, SAFE, "smollm2-refusal", SPLIT))
            else:
                answers.append(Answer(request, text, COMPLIANT, "smollm2", SPLIT))
            refusal = template_refusal(request.text, rng)
            answers.append(Answer(request, refusal, SAFE, "template", SPLIT))
            continue
        alarming = request.source == PROBE_ALARMING_SOURCE
        group = "alarming" if alarming else "ordinary"
        if not text:
            log[f"dropped/{group}/empty"] += 1
        elif is_refusal(text):
            log[f"generator_refused/{group}"] += 1
            log[f"dropped/{group}/generator_refusal"] += 1
        else:
            source = "smollm2-alarming" if alarming else "smollm2"
            answers.append(Answer(request, text, GOOD, source, SPLIT))
    return answers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="Folder for the rows, the log and the cache.")
    parser.add_argument("--max-new-tokens", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    from aligners.backends.transformers import TransformersBackend

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    requests = probe_requests()
    generated = generate_answers(
        TransformersBackend(GENERATOR),
        requests,
        out_dir / "generations.jsonl",
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    log: Counter[str] = Counter(f"requests/{r.source}" for r in requests)
    answers = probe_answers(requests, generated, log)
    rows_path = write_records(out_dir / "probe_answers.jsonl", [a.example() for a in answers])

    by_kind_source = Counter(f"{a.kind}/{a.source}" for a in answers)
    summary: dict[str, Any] = {
        "generator": GENERATOR,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "rows": len(answers),
        "rows_by_kind": dict(sorted(Counter(a.kind for a in answers).items())),
        "rows_by_kind_source": dict(sorted(by_kind_source.items())),
        "counts": dict(sorted(log.items())),
    }
    (out_dir / "probe_log.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(f"wrote {rows_path} and {out_dir / 'probe_log.json'}")


if __name__ == "__main__":
    main()
