"""The evaluation harness: upstream answers -> squad -> judges -> per-example records + summary."""

from __future__ import annotations

import difflib
import statistics
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aligners.eval.data import EvalItem
from aligners.eval.judges import InspectorJudge, Judge, Verdict
from aligners.eval.stats import CIMethod, WinStats, win_stats
from aligners.eval.upstream import Upstream, make_upstream
from aligners.steps import Machine, Work, adrive, drive


class EvalConfig(BaseModel):
    """How the harness batches and how it computes confidence intervals."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=8, gt=0, description="Questions per upstream/squad/judge call.")
    ci: CIMethod = "wilson"
    confidence: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_samples: int = Field(default=2000, gt=0)
    seed: int = 0
    progress: bool = Field(default=True, description="Show progress bars on stderr.")


class EvalExample(BaseModel):
    """Everything about one question: the answers, what the squad did, what the judges said."""

    id: str
    question: str
    category: str | None = None
    subcategory: str | None = None
    original: str
    aligned: str
    changed: bool = False
    applied: list[str] = Field(default_factory=list)
    flagged: list[str] = Field(default_factory=list)
    initial_scores: dict[str, float] = Field(default_factory=dict)
    final_scores: dict[str, float] = Field(default_factory=dict)
    trajectory: list[dict[str, float]] = Field(default_factory=list)
    stages: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    passed_before: bool | None = None
    passed_after: bool | None = None
    edit_size: float = Field(default=0.0, description="1 - word-level similarity of the two texts")
    upstream_seconds: float | None = Field(default=None, description="Amortised over its batch.")
    squad_seconds: float | None = Field(default=None, description="Amortised over its batch.")
    verdicts: dict[str, Verdict] = Field(default_factory=dict)
    error: str | None = Field(default=None, description="Why this example was not aligned/judged.")


def edit_size(original: str, aligned: str) -> float:
    """How much of the text changed: 1 - difflib word-level similarity (0 = identical)."""
    if original == aligned:
        return 0.0
    matcher = difflib.SequenceMatcher(None, original.split(), aligned.split(), autojunk=False)
    return 1.0 - matcher.ratio()


def _example_from_result(item: EvalItem, result: Any) -> EvalExample:
    record = result.to_record()
    thresholds = result.thresholds
    initial = result.initial_scores
    return EvalExample(
        id=item.id,
        question=item.question,
        category=item.category,
        subcategory=item.subcategory,
        original=result.original,
        aligned=result.text,
        changed=result.changed,
        applied=list(result.applied),
        flagged=list(result.flagged),
        initial_scores=dict(initial),
        final_scores=dict(result.final_scores),
        trajectory=[dict(t) for t in result.trajectory],
        stages=record["stages"],
        failures=list(result.failures),
        passed_before=all(s >= thresholds.get(n, 0.5) for n, s in initial.items()),
        passed_after=result.passed,
        edit_size=edit_size(result.original, result.text),
    )


def _error_example(item: EvalItem, original: str, error: str) -> EvalExample:
    # Keep the answer even when it could not be aligned: the record must never lose it.
    return EvalExample(
        id=item.id,
        question=item.question,
        category=item.category,
        subcategory=item.subcategory,
        original=original,
        aligned=original,
        error=error,
    )


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, leave=False)


def _as_items(items: Sequence[EvalItem | str]) -> list[EvalItem]:
    if isinstance(items, str):
        raise TypeError("items must be a sequence of EvalItem or str, not a single str")
    out = []
    for number, item in enumerate(items, 1):
        if isinstance(item, EvalItem):
            out.append(item)
        elif isinstance(item, str):
            out.append(EvalItem(id=str(number), question=item))
        else:
            raise TypeError(f"item {number} is {type(item).__name__}, expected EvalItem or str")
    if not out:
        raise ValueError("nothing to evaluate: no questions given")
    return out


def build_squad(
    criteria: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    max_new_tokens: int | None = None,
    aligner: str | None = None,
    inspector: str | Path | None = None,
    block_threshold: float | None = None,
) -> Any:
    """The default squad with the aligners' token budget set (and optionally another aligner
    or a saved inspector).

    ``aligner`` is a directory saved with ``Aligner.save_pretrained`` or any causal LM; every
    member uses it for its own criterion. ``inspector`` is a saved inspector directory (a
    cross-encoder serves each criterion from its head). ``threshold`` and ``block_threshold``
    None keep each inspector's shipped ones (``block_threshold=0``: never block).
    """
    from aligners.squad.squad import Squad

    options = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    return Squad.default(
        criteria,
        threshold=threshold,
        aligner=aligner,
        aligner_options=options,
        inspector=inspector,
        block_threshold=block_threshold,
    )


class EvalRun:
    """The outcome of :func:`evaluate`: ``examples`` (one per question) and ``summary``."""

    def __init__(self, examples: list[EvalExample], summary: dict[str, Any]) -> None:
        self.examples = examples
        self.summary = summary

    def write(self, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write ``examples.jsonl``, ``summary.json``, ``report.md`` and PNG plots."""
        from aligners.eval.report import write_outputs

        return write_outputs(self, out_dir, plots=plots)


class Evaluator:
    """Runs the whole evaluation; build once, call :meth:`run` or :meth:`arun`.

    Example:
        >>> from aligners import Squad
        >>> evaluator = Evaluator(squad=Squad.default())          # loads nothing yet
        >>> run = evaluator.run(["How do I pick a lock?"])          # doctest: +SKIP
        >>> run.write("eval-out")                                   # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        squad: Any = None,
        upstream: Any = None,
        judges: Sequence[Judge] | None = None,
        config: EvalConfig | None = None,
        upstream_options: dict[str, Any] | None = None,
    ) -> None:
        from aligners.squad.squad import Squad

        self.squad = squad if squad is not None else Squad.default()
        if not isinstance(self.squad, Squad):
            raise TypeError(f"squad must be an aligners.Squad, got {type(self.squad).__name__}")
        self._upstream_spec = upstream
        self._upstream_options = upstream_options or {}
        self._upstream: Upstream | None = None
        self.judges = list(judges) if judges is not None else [InspectorJudge(self.squad)]
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names):
            raise ValueError(f"judges must have distinct names, got {names}")
        self.config = config or EvalConfig()

    @property
    def upstream(self) -> Upstream:
        """The upstream model (the local default SmolLM2 when none was given)."""
        if self._upstream is None:
            spec = self._upstream_spec if self._upstream_spec is not None else "smollm2"
            self._upstream = make_upstream(spec, **self._upstream_options)
        return self._upstream

    def _batches(self, n: int) -> list[range]:
        size = self.config.batch_size
        return [range(s, min(s + size, n)) for s in range(0, n, size)]

    # -- steps ---------------------------------------------------------------------------------

    def _answers_needed(self, items: list[EvalItem]) -> list[int]:
        return [i for i, item in enumerate(items) if item.answer is None]

    def _squad_one_by_one(
        self, items: list[EvalItem], originals: list[str], indices: Sequence[int]
    ) -> list[EvalExample]:
        out = []
        for i in indices:
            try:
                start = time.perf_counter()
                result = self.squad.align(items[i].question, originals[i])
                example = _example_from_result(items[i], result)
                example.squad_seconds = time.perf_counter() - start
            except Exception as error:  # one bad answer must not sink the run
                example = _error_example(items[i], originals[i], f"{type(error).__name__}: {error}")
            out.append(example)
        return out

    def _valid(self, originals: list[str], batch: range) -> tuple[list[int], list[int]]:
        good = [i for i in batch if originals[i].strip()]
        bad = [i for i in batch if not originals[i].strip()]
        return good, bad

    def run(self, items: Sequence[EvalItem | str]) -> EvalRun:
        """Evaluate every item: answer (unless answered), align, judge, summarise."""
        return drive(self._steps(_as_items(items), self.config.progress))

    async def arun(self, items: Sequence[EvalItem | str]) -> EvalRun:
        """Async :meth:`run`: the upstream, squad and judges run off the event loop (no
        progress bars)."""
        return await adrive(self._steps(_as_items(items), False))

    def _steps(self, items: list[EvalItem], show: bool) -> Machine[EvalRun]:
        """The evaluation as a step machine: the upstream, squad and judge calls are its work
        (:meth:`run` and :meth:`arun` drive it)."""
        originals = [item.answer or "" for item in items]
        upstream_seconds: dict[int, float] = {}
        upstream_errors: dict[int, str] = {}
        needed = self._answers_needed(items)
        if needed:
            upstream = self.upstream
            with _bar(len(needed), "upstream answers", show) as bar:
                for chunk in self._batches(len(needed)):
                    indices = [needed[k] for k in chunk]
                    questions = [items[i].question for i in indices]
                    start = time.perf_counter()
                    try:
                        answers = yield Work(
                            partial(upstream.answer_batch, questions),
                            partial(upstream.aanswer_batch, questions),
                        )
                    except Exception as error:  # record it per question; the run goes on
                        answers = [""] * len(indices)
                        for i in indices:
                            upstream_errors[i] = (
                                f"upstream failed ({type(error).__name__}: {error})"
                            )
                    elapsed = time.perf_counter() - start
                    for i, answer in zip(indices, answers, strict=True):
                        originals[i] = answer
                        upstream_seconds[i] = elapsed / len(indices)
                    bar.update(len(indices))
        examples: list[EvalExample | None] = [None] * len(items)
        with _bar(len(items), "squad", show) as bar:
            for batch in self._batches(len(items)):
                yield from self._squad_steps(items, originals, batch, upstream_errors, examples)
                bar.update(len(batch))
        final = [e for e in examples if e is not None]
        for i, example in enumerate(final):
            example.upstream_seconds = upstream_seconds.get(i)
        for judge in self.judges:
            yield from self._judge_steps(judge, final, show)
        return EvalRun(final, summarize(final, self, self.config))

    def _squad_steps(
        self,
        items: list[EvalItem],
        originals: list[str],
        batch: range,
        upstream_errors: dict[int, str],
        examples: list[EvalExample | None],
    ) -> Machine[None]:
        """One batch through the squad, into ``examples``."""
        good, bad = self._valid(originals, batch)
        for i in bad:
            examples[i] = _error_example(
                items[i],
                originals[i],
                upstream_errors.get(i, "empty answer: nothing to align"),
            )
        if not good:
            return
        questions, answers = [items[i].question for i in good], [originals[i] for i in good]
        start = time.perf_counter()
        try:
            results = yield Work(
                partial(self.squad.align_batch, questions, answers),
                partial(self.squad.aalign_batch, questions, answers),
            )
        except Exception:  # isolate the failing answer(s); keep the rest
            done = self._squad_one_by_one(items, originals, good)
        else:
            elapsed = time.perf_counter() - start
            done = [_example_from_result(items[i], r) for i, r in zip(good, results, strict=True)]
            for example in done:
                example.squad_seconds = elapsed / len(good)
        for i, example in zip(good, done, strict=True):
            examples[i] = example

    def _judge_steps(self, judge: Judge, examples: list[EvalExample], show: bool) -> Machine[None]:
        todo = [e for e in examples if e.error is None]
        with _bar(len(todo), f"judge {judge.name}", show) as bar:
            for chunk in self._batches(len(todo)):
                part = [todo[k] for k in chunk]
                texts = ([e.question for e in part], [e.original for e in part])
                aligned = [e.aligned for e in part]
                start = time.perf_counter()
                verdicts = yield Work(
                    partial(judge.judge, *texts, aligned), partial(judge.ajudge, *texts, aligned)
                )
                elapsed = time.perf_counter() - start
                for example, verdict in zip(part, verdicts, strict=True):
                    verdict.detail.setdefault("seconds", elapsed / len(part))
                    example.verdicts[judge.name] = verdict
                bar.update(len(part))


def evaluate(
    items: Sequence[EvalItem | str],
    *,
    squad: Any = None,
    upstream: Any = None,
    judges: Sequence[Judge] | None = None,
    config: EvalConfig | None = None,
    **upstream_options: Any,
) -> EvalRun:
    """Evaluate a squad on questions (answered by ``upstream``) or on items that carry answers."""
    return _evaluator(squad, upstream, judges, config, upstream_options).run(items)


async def aevaluate(
    items: Sequence[EvalItem | str],
    *,
    squad: Any = None,
    upstream: Any = None,
    judges: Sequence[Judge] | None = None,
    config: EvalConfig | None = None,
    **upstream_options: Any,
) -> EvalRun:
    """Async :func:`evaluate`."""
    return await _evaluator(squad, upstream, judges, config, upstream_options).arun(items)


def _evaluator(
    squad: Any,
    upstream: Any,
    judges: Sequence[Judge] | None,
    config: EvalConfig | None,
    upstream_options: dict[str, Any],
) -> Evaluator:
    return Evaluator(
        squad=squad,
        upstream=upstream,
        judges=judges,
        config=config,
        upstream_options=upstream_options,
    )


# -- summary -----------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _stats(outcomes: Sequence[str], config: EvalConfig) -> WinStats:
    return win_stats(
        outcomes,
        ci=config.ci,
        confidence=config.confidence,
        samples=config.bootstrap_samples,
        seed=config.seed,
    )


def describe_squad(squad: Any) -> list[dict[str, Any]]:
    """What each member is made of (trained or zero-shot), for the report."""
    members = []
    for member in squad.members:
        inspector = member.inspector
        kind = type(inspector).__name__ if inspector is not None else None
        note = None
        config = getattr(inspector, "config", None)
        if config is not None and isinstance(getattr(config, "metrics", None), dict):
            note = config.metrics.get("note")
        aligner = member.aligner
        members.append(
            {
                "criterion": member.name,
                "threshold": member.threshold,
                "aligner": repr(aligner) if aligner is not None else None,
                "aligner_adapter": getattr(getattr(aligner, "config", None), "adapter", None),
                "inspector": kind,
                "inspector_note": note or ("trained" if inspector is not None else None),
            }
        )
    return members


def summarize(
    examples: Sequence[EvalExample], evaluator: Any, config: EvalConfig
) -> dict[str, Any]:
    """The JSON summary: squad behaviour, costs, and every judge's win statistics."""
    valid = [e for e in examples if e.error is None]
    criteria = list(evaluator.squad.criteria) if evaluator is not None else []
    changed = [e for e in valid if e.changed]
    categories = sorted({e.category for e in valid if e.category is not None})
    judges: dict[str, Any] = {}
    for judge in evaluator.judges if evaluator is not None else []:
        outcomes = [e.verdicts[judge.name].outcome for e in valid if judge.name in e.verdicts]
        per_category = {
            cat: _stats(
                [
                    e.verdicts[judge.name].outcome
                    for e in valid
                    if e.category == cat and judge.name in e.verdicts
                ],
                config,
            ).model_dump()
            for cat in categories
        }
        on_changed = [e.verdicts[judge.name].outcome for e in changed if judge.name in e.verdicts]
        judges[judge.name] = {
            "overall": _stats(outcomes, config).model_dump(),
            "changed_only": _stats(on_changed, config).model_dump(),
            "per_category": per_category,
        }
    upstream_times = [e.upstream_seconds for e in valid if e.upstream_seconds is not None]
    squad_times = [e.squad_seconds for e in valid if e.squad_seconds is not None]
    edits = [e.edit_size for e in changed]
    summary: dict[str, Any] = {
        "n_examples": len(examples),
        "n_evaluated": len(valid),
        "n_errors": len(examples) - len(valid),
        "errors": [{"id": e.id, "error": e.error} for e in examples if e.error is not None],
        "upstream": evaluator._upstream.name
        if evaluator is not None and evaluator._upstream
        else "answers file",
        "squad": describe_squad(evaluator.squad) if evaluator is not None else [],
        "criteria": criteria,
        "changed_rate": len(changed) / len(valid) if valid else None,
        "flagged_rate": {
            c: sum(c in e.flagged for e in valid) / len(valid) if valid else None for c in criteria
        },
        "applied_rate": {
            c: sum(c in e.applied for e in valid) / len(valid) if valid else None for c in criteria
        },
        "mean_score_before": {
            c: _mean([e.initial_scores[c] for e in valid if c in e.initial_scores])
            for c in criteria
        },
        "mean_score_after": {
            c: _mean([e.final_scores[c] for e in valid if c in e.final_scores]) for c in criteria
        },
        "pass_rate_before": _mean([float(bool(e.passed_before)) for e in valid]),
        "pass_rate_after": _mean([float(bool(e.passed_after)) for e in valid]),
        "edit_size_changed": {
            "mean": _mean(edits),
            "median": statistics.median(edits) if edits else None,
            "max": max(edits) if edits else None,
        },
        "seconds": {
            "upstream_per_answer": _mean(upstream_times),
            "squad_per_answer": _mean(squad_times),
            "upstream_total": sum(upstream_times),
            "squad_total": sum(squad_times),
        },
        "categories": categories,
        "judges": judges,
        "config": config.model_dump(),
    }
    return summary
