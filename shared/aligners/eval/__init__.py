"""Evaluate aligners on your questions and models: what changed, how judges rate it, what it costs.

>>> from aligners.eval import win_stats
>>> win_stats(["win", "tie", "loss", "win"]).omega
0.25
"""

from aligners.eval.data import EvalItem, load_questions, read_items, sample_items
from aligners.eval.harness import (
    EvalConfig,
    EvalExample,
    EvalRun,
    Evaluator,
    aevaluate,
    build_squad,
    edit_size,
    evaluate,
)
from aligners.eval.judges import (
    InspectorJudge,
    Judge,
    PairwiseJudge,
    RewardModelJudge,
    Verdict,
    make_judge,
    parse_choice,
)
from aligners.eval.stats import WinStats, wilson_interval, win_stats
from aligners.eval.upstream import ChatModelUpstream, LocalUpstream, Upstream, make_upstream

__all__ = [
    "ChatModelUpstream",
    "EvalConfig",
    "EvalExample",
    "EvalItem",
    "EvalRun",
    "Evaluator",
    "InspectorJudge",
    "Judge",
    "LocalUpstream",
    "PairwiseJudge",
    "RewardModelJudge",
    "Upstream",
    "Verdict",
    "WinStats",
    "aevaluate",
    "build_squad",
    "edit_size",
    "evaluate",
    "load_questions",
    "make_judge",
    "make_upstream",
    "parse_choice",
    "read_items",
    "sample_items",
    "wilson_interval",
    "win_stats",
]
