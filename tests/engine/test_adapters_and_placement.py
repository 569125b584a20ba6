"""PEFT adapters and accelerate placement through the same Aligner call."""

from __future__ import annotations

from pathlib import Path

import pytest

from aligners import Aligner


def _lora_adapter(base_dir: Path, target: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(target)
    return target


def test_peft_adapter_changes_the_output_and_round_trips(tiny_lm_dir: Path, tmp_path: Path) -> None:
    adapter = _lora_adapter(tiny_lm_dir, tmp_path / "adapter")
    base = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=10)
    tuned = Aligner(str(tiny_lm_dir), format="chat", max_new_tokens=10, adapter=str(adapter))
    question, answer = "What is the capital of France?", "Paris is the capital."
    assert tuned.align(question, answer) != base.align(question, answer)
    tuned.save_pretrained(tmp_path / "saved")
    assert Aligner.from_pretrained(tmp_path / "saved").align(question, answer) == tuned.align(
        question, answer
    )


def test_missing_adapter_is_a_clear_error(tiny_lm_dir: Path, tmp_path: Path) -> None:
    aligner = Aligner(str(tiny_lm_dir), format="chat", adapter=str(tmp_path / "no-adapter"))
    with pytest.raises(FileNotFoundError, match="adapter"):
        aligner.align("q", "a")


def test_device_map_and_dtype_go_through_accelerate(tiny_lm_dir: Path) -> None:
    import torch

    aligner = Aligner(
        str(tiny_lm_dir), format="chat", device_map="cpu", dtype="bfloat16", max_new_tokens=4
    )
    assert isinstance(aligner.align("q", "a"), str)
    model = aligner.backend.load().model  # type: ignore[attr-defined]
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    with pytest.raises(ValueError, match="dtype"):
        Aligner(str(tiny_lm_dir), dtype="float8")  # type: ignore[arg-type]


def test_the_three_import_packages_import() -> None:
    import importlib

    for name in ("aligners", "langchain_aligners", "llamaindex_aligners"):
        assert importlib.import_module(name)
