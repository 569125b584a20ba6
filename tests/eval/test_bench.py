"""Benchmark helpers on tiny models; the real-model smoke run is marked e2e."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligners.backends import TransformersBackend
from aligners.eval.bench import (
    BENCHMARKS,
    BenchConfig,
    _typos,
    copy_prompts,
    critique_and_revise,
    markdown,
    run_benchmarks,
    timed,
)


def test_timed_runs_warmup_and_repeats() -> None:
    calls: list[int] = []
    timing, result = timed(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(calls) == 5 and result == 5
    assert len(timing.runs) == 3 and min(timing.runs) <= timing.median <= max(timing.runs)


def test_copy_prompts_hold_the_same_texts() -> None:
    groups = copy_prompts(2)
    near, heavy = groups["near-copy (fix typos)"], groups["heavy rewrite (re-explain)"]
    assert len(near) == len(heavy) == 2
    for n, h in zip(near, heavy, strict=True):
        typo_text = n[0]["content"].split("\n\n", 1)[1]
        clean_text = h[0]["content"].split("\n\n", 1)[1]
        assert typo_text != clean_text and typo_text == _typos(clean_text)
        assert len(typo_text.split()) == len(clean_text.split())  # typos swap letters only


def test_critique_and_revise_makes_two_calls_per_principle(tiny_lm_dir: Path) -> None:
    backend = TransformersBackend(str(tiny_lm_dir))
    prompts: list[object] = []
    original = backend.generate

    def spy(batch, config):  # type: ignore[no-untyped-def]
        prompts.append(batch)
        return original(batch, config)

    backend.generate = spy  # type: ignore[method-assign]
    out = critique_and_revise(backend, ["q1", "q2"], ["a1", "a2"], ["Be kind.", "Be true."], 4)
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)
    assert len(prompts) == 4  # critique + revise for each of the two principles
    assert "Be kind." in prompts[0][0][0]["content"]  # type: ignore[index]
    assert "Critique:" in prompts[1][0][0]["content"]  # type: ignore[index]


def test_markdown_lists_every_benchmark_with_its_target() -> None:
    results = {
        "batch": {
            "rows": [{"what": "batched, batch size 16", "median_s": 1.5, "speedup": 3.2}],
            "headline": "batch 16: 3.2x",
            "target": {"goal": ">= 3x at batch 16", "met": True},
        },
        "copy": {"error": "RuntimeError: boom", "rows": []},
    }
    text = markdown(results, {"cpu_count": 2}, "aligners bench")
    assert "| 2. Aligner throughput: batched vs one generate per pair | batch 16: 3.2x |" in text
    assert "| yes |" in text
    assert "error: RuntimeError: boom" in text
    assert "Command: `aligners bench`" in text


def test_unknown_benchmark_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmarks"):
        run_benchmarks(["speed"], BenchConfig.quick(), tmp_path)
    assert set(BENCHMARKS) == {"inspect", "batch", "copy", "critique", "memory", "gates"}


@pytest.mark.e2e
def test_quick_batch_benchmark_on_the_real_model(tmp_path: Path) -> None:
    config = BenchConfig.quick().model_copy(update={"batch_pairs": 2, "batch_sizes": (2,)})
    results = run_benchmarks(["batch"], config, tmp_path, command="test")
    rows = results["batch"]["rows"]
    assert [r["what"] for r in rows] == [
        "one generate per pair (2 pairs) = batch size 1",
        "batched, batch size 2",
    ]
    assert rows[1]["speedup"] > 0 and rows[1]["identical"] in {
        f"{k}/2 vs one-by-one" for k in (0, 1, 2)
    }
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["results"]["batch"]["headline"] == results["batch"]["headline"]
