"""Aligner SFT: Question-Answer -> Correction, loss on the correction only, full or LoRA.

Runs through transformers' ``Trainer`` so the same call works on a CPU and on GPUs (accelerate
picks the device); checkpoints, resume, a held-out eval loss, a progress bar and a seed included.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aligners.aligner.config import CONFIG_NAME, AlignerConfig
from aligners.criteria import get_criterion
from aligners.data.records import CorrectionTriple
from aligners.formats import PromptFormat, get_format

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
FULL_MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
_WARMUP_DONE = "WARMUP_DONE"


class AlignerTrainingConfig(BaseModel):
    """Settings for :func:`train_aligner`; the CLI exposes each as a flag."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="smollm2", description="Base causal LM (alias, directory, hub id).")
    format: str = Field(default="chat", description="Prompt format the aligner will be used with.")
    criterion: str | None = Field(default=None, description="Criterion for triples naming none.")
    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(default=8, gt=0)
    lora_alpha: int = Field(default=16, gt=0)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target: list[str] | str = Field(
        default="all-linear", description="Module names, or 'all-linear'."
    )
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, description="Stop the main stage after this many steps.")
    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=8, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    batching: Literal["random", "length_buckets"] = Field(
        default="random",
        description="random: shuffled examples (transformers' default); length_buckets: batches "
        "of similar-length examples in shuffled order, which pads less (about a quarter fewer "
        "tokens on the safety recipe) but, where length tracks the kind of example (copies vs "
        "rewrites), makes batches of one kind: that trained a worse safety aligner.",
    )
    max_length: int = Field(default=512, gt=8, description="Longer examples are skipped, counted.")
    warmup_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Identity warm-up: train first on Q-A-A copies for this share of the data.",
    )
    copy_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Add Q-C-C copies (good answer in, same answer out) for this share of triples.",
    )
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    eval_steps: int | None = Field(default=None, gt=0)
    save_steps: int = Field(default=50, gt=0)
    logging_steps: int = Field(default=10, gt=0)
    lr_warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    seed: int = 0
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_new_tokens: int = Field(default=256, gt=0, description="Written into aligner_config.json.")
    handback_opening: str | None = Field(
        default=None,
        min_length=1,
        description="Written into aligner_config.json (AlignerConfig.handback_opening).",
    )
    mixed_precision: Literal["auto", "bf16", "no"] = Field(
        default="auto",
        description="bf16 autocast; auto = on GPUs that support it and on CPUs with native bf16 "
        "instructions (1.5x faster on a 2-core AVX512-BF16 CPU, same loss).",
    )
    adapter_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32",
        description="Dtype of the saved LoRA weights; float16 halves the file, and the engine "
        "casts them to the model's dtype on load.",
    )


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


def _prompt_text(
    fmt: PromptFormat, tokenizer: Any, triple: CorrectionTriple, criterion: str | None
) -> tuple[str, bool]:
    crit_name = triple.criterion or criterion
    crit = get_criterion(crit_name) if crit_name else None
    prompt = fmt.build_prompt(triple.question, triple.answer, crit)
    if isinstance(prompt, str):
        return prompt, True
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"format {fmt.name!r} needs a chat template, and this model's tokenizer has none; "
            "train with a raw format such as 'ibm' or 'pku'"
        )
    text: str = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return text, False


def chat_turn_end_ids(tokenizer: Any) -> list[int]:
    """Token ids the chat template puts right after an assistant message (e.g. ``<|im_end|>``).

    Chat aligners must learn to end their turn exactly as the template does; the tokenizer's
    ``eos_token`` is not always that token (GGUF conversions differ between versions).
    """
    marker = "\x00END-PROBE\x00"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}]
    text: str = tokenizer.apply_chat_template(messages, tokenize=False)
    tail = text[text.index(marker) + len(marker) :]
    # The whitespace after the end marker is never generated: the marker stops generation.
    ids: list[int] = (
        tokenizer(tail.rstrip(), add_special_tokens=False)["input_ids"] if tail.strip() else []
    )
    return ids


def encode_triple(
    triple: CorrectionTriple,
    fmt: PromptFormat,
    tokenizer: Any,
    *,
    criterion: str | None = None,
    max_length: int | None = None,
) -> EncodedExample | None:
    """Token ids and labels for one triple, tokenised exactly as the backend does at inference;
    labels are -100 on the prompt so the loss covers only the correction (and its end token).
    Returns None when the example is longer than ``max_length``.
    """
    prompt, raw = _prompt_text(fmt, tokenizer, triple, criterion)
    # Raw prompts get the model's BOS like the backend adds; chat templates carry their own.
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=raw)["input_ids"]
    target_ids: list[int] = tokenizer(
        fmt.training_target(triple.correction), add_special_tokens=False
    )["input_ids"]
    end = chat_turn_end_ids(tokenizer) if not raw else None
    if end:
        target_ids = [*target_ids, *end]
    elif tokenizer.eos_token_id is not None:
        target_ids = [*target_ids, tokenizer.eos_token_id]
    ids = prompt_ids + target_ids
    if max_length is not None and len(ids) > max_length:
        return None
    return EncodedExample(ids, [-100] * len(prompt_ids) + target_ids)


class _Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [self.pad_id] * (width - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [-100] * (width - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


class LengthBucketSampler:
    """Indices for batches of similar length, with the batches themselves in random order.

    transformers' ``group_by_length`` sorts each mega-batch from long to short, so an epoch
    walks through lengths in waves; where length tracks the kind of example (copies are longer
    than rewrites) those waves become waves of one kind. Here the sorted batches are shuffled.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Trainer calls this at each epoch (also on resume), so orders differ but replay."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.window):
            window = sorted(order[start : start + self.window], key=self.lengths.__getitem__)
            batches += [
                window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)
            ]
        rng.shuffle(batches)
        return iter([i for batch in batches for i in batch])


def _trainer_class(config: AlignerTrainingConfig) -> Any:
    from transformers import Trainer

    if config.batching == "random":
        return Trainer

    class LengthBucketTrainer(Trainer):  # type: ignore[misc]
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            rows: list[dict[str, list[int]]] = self.train_dataset  # type: ignore[assignment]
            return LengthBucketSampler(
                [len(row["input_ids"]) for row in rows],
                config.batch_size * config.grad_accum,
                config.seed,
            )

    return LengthBucketTrainer


def split_triples(
    triples: Sequence[CorrectionTriple], eval_fraction: float, seed: int
) -> tuple[list[CorrectionTriple], list[CorrectionTriple]]:
    """Seeded held-out split by question (no question on both sides)."""
    if eval_fraction <= 0:
        return list(triples), []
    questions = sorted({t.question for t in triples})
    random.Random(seed).shuffle(questions)
    n_eval = max(1, round(len(questions) * eval_fraction)) if len(questions) > 1 else 0
    held = set(questions[:n_eval])
    return [t for t in triples if t.question not in held], [
        t for t in triples if t.question in held
    ]


def build_stages(
    triples: Sequence[CorrectionTriple], config: AlignerTrainingConfig
) -> tuple[list[CorrectionTriple], list[CorrectionTriple]]:
    """(identity warm-up triples Q-A-A, main triples Q-A-C plus optional Q-C-C copies)."""
    rng = random.Random(config.seed)
    triples = list(triples)
    n_warm = round(len(triples) * config.warmup_fraction)
    warmup = [
        t.model_copy(
            update={"correction": t.answer, "metadata": t.metadata | {"stage": "identity-warmup"}}
        )
        for t in rng.sample(triples, n_warm)
    ]
    n_copy = round(len(triples) * config.copy_fraction)
    copies = [
        t.model_copy(update={"answer": t.correction, "metadata": t.metadata | {"stage": "copy"}})
        for t in rng.sample(triples, n_copy)
    ]
    main = triples + copies
    rng.shuffle(main)
    return warmup, main


def _load_model(config: AlignerTrainingConfig, fmt: PromptFormat) -> tuple[Any, Any, list[int]]:
    import torch

    from aligners.backends.models import converted_cache_dir, resolve_model
    from aligners.backends.transformers import load_causal_lm

    dtype = config.dtype
    if dtype == "auto":
        # bf16 where the GPU supports it; float32 on CPU, where half precision trains badly.
        dtype = (
            "bfloat16"
            if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else "float32"
        )
    source = resolve_model(config.model)
    loaded = load_causal_lm(source, dtype=dtype)
    if getattr(loaded.model, "hf_quantizer", None) is not None:
        # A GGUF loaded for the first time still says "quantized" and Trainer refuses it, though
        # its weights are dequantized; the engine has just cached plain weights, so reload those.
        converted = converted_cache_dir(source)
        if converted is None or not (converted / "config.json").exists():
            raise ValueError(
                f"cannot fine-tune {config.model!r}: it loads as a quantized model; convert it to "
                "safetensors first (load it once with aligners, or save_pretrained it)"
            )
        loaded = load_causal_lm(source, dtype=dtype)
    model, tokenizer = loaded.model, loaded.tokenizer
    new_tokens = [t for t in fmt.special_tokens if t not in tokenizer.get_vocab()]
    if new_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": new_tokens})
        model.resize_token_embeddings(len(tokenizer))
    new_ids = [tokenizer.convert_tokens_to_ids(t) for t in new_tokens]
    tokenizer.padding_side = "right"
    model.train()
    model.config.use_cache = False
    return model, tokenizer, new_ids


def _wrap_lora(model: Any, config: AlignerTrainingConfig, new_ids: list[int]) -> Any:
    from peft import LoraConfig, get_peft_model

    kwargs: dict[str, Any] = {}
    if new_ids:
        # New marker tokens need trained embeddings; train only those rows, not the whole matrix,
        # so the adapter stays small.
        kwargs["trainable_token_indices"] = {"embed_tokens": new_ids}
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target,
        task_type="CAUSAL_LM",
        **kwargs,
    )
    return get_peft_model(model, lora)


def _training_args(
    config: AlignerTrainingConfig, output: Path, *, has_eval: bool, progress: bool, max_steps: int
) -> Any:
    import torch
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    eval_kwargs: dict[str, Any] = {}
    if has_eval and config.eval_steps:
        eval_kwargs = {"eval_strategy": "steps", "eval_steps": config.eval_steps}
    import inspect

    # transformers 5 folded warmup_ratio into a float warmup_steps; 4.x still has warmup_ratio.
    if "warmup_ratio" in inspect.signature(TrainingArguments).parameters:
        eval_kwargs["warmup_ratio"] = config.lr_warmup_ratio
    else:
        eval_kwargs["warmup_steps"] = float(config.lr_warmup_ratio)
    return TrainingArguments(
        output_dir=str(output),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        lr_scheduler_type="cosine",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=not progress,
        use_cpu=not on_gpu,
        bf16=_use_bf16(config, on_gpu),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **eval_kwargs,
    )


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _use_bf16(config: AlignerTrainingConfig, on_gpu: bool) -> bool:
    import torch

    if config.mixed_precision != "auto":
        return config.mixed_precision == "bf16"
    if config.dtype not in ("auto", "bfloat16"):
        return False
    return torch.cuda.is_bf16_supported() if on_gpu else _cpu_has_native_bf16()


def _last_checkpoint(directory: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not directory.is_dir():
        return None
    found: str | None = get_last_checkpoint(str(directory))
    return found


def _encode_all(
    triples: Sequence[CorrectionTriple],
    fmt: PromptFormat,
    tokenizer: Any,
    config: AlignerTrainingConfig,
) -> tuple[list[dict[str, list[int]]], int]:
    rows: list[dict[str, list[int]]] = []
    skipped = 0
    for t in triples:
        encoded = encode_triple(
            t, fmt, tokenizer, criterion=config.criterion, max_length=config.max_length
        )
        if encoded is None:
            skipped += 1
            continue
        rows.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    return rows, skipped


def train_aligner(
    triples: Sequence[CorrectionTriple],
    output_dir: str | Path,
    config: AlignerTrainingConfig | None = None,
    *,
    evaluation: Sequence[CorrectionTriple] | None = None,
    resume: bool = False,
    progress: bool = True,
    data_description: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune an aligner on triples and save it so ``Aligner.from_pretrained(output_dir)`` works.

    Layout of ``output_dir``: ``aligner_config.json`` (base model, format, relative adapter path),
    ``adapter/`` (LoRA) or ``model/`` (full fine-tuning), ``metrics.json`` (losses, counts,
    settings), ``checkpoints/`` (for ``resume=True``; safe to delete afterwards).
    """
    from transformers import Trainer

    config = config or AlignerTrainingConfig()
    triples = list(triples)
    if not triples:
        raise ValueError("no training triples")
    fmt = get_format(config.format)
    if config.criterion is not None:
        get_criterion(config.criterion)  # fail early on a typo
    if evaluation is None:
        train, held = split_triples(triples, config.eval_fraction, config.seed)
    else:
        train, held = triples, list(evaluation)
    output = Path(output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    checkpoints = output / "checkpoints"

    model, tokenizer, new_ids = _load_model(config, fmt)
    if config.method == "lora":
        model = _wrap_lora(model, config, new_ids)
    warmup, main = build_stages(train, config)
    warm_rows, warm_skipped = _encode_all(warmup, fmt, tokenizer, config)
    main_rows, main_skipped = _encode_all(main, fmt, tokenizer, config)
    eval_rows, eval_skipped = _encode_all(held, fmt, tokenizer, config)
    if not main_rows:
        raise ValueError(
            f"every training example is longer than max_length={config.max_length} tokens; "
            "raise --max-length or shorten the data"
        )
    collator = _Collator(tokenizer.pad_token_id)
    metrics: dict[str, Any] = {
        "n_train_triples": len(train),
        "n_eval_triples": len(held),
        "n_warmup_examples": len(warm_rows),
        "n_main_examples": len(main_rows),
        "n_eval_examples": len(eval_rows),
        "skipped_too_long": warm_skipped + main_skipped + eval_skipped,
    }

    def run_stage(name: str, rows: list[dict[str, list[int]]], max_steps: int) -> dict[str, Any]:
        stage_dir = checkpoints / name
        trainer = _trainer_class(config)(
            model=model,
            args=_training_args(
                config, stage_dir, has_eval=bool(eval_rows), progress=progress, max_steps=max_steps
            ),
            train_dataset=rows,  # type: ignore[arg-type]
            eval_dataset=eval_rows or None,  # type: ignore[arg-type]
            data_collator=collator,
        )
        last = _last_checkpoint(stage_dir) if resume else None
        result = trainer.train(resume_from_checkpoint=last)
        stage: dict[str, Any] = {
            "train_loss": round(float(result.training_loss), 4),
            "steps": int(result.global_step),
            "resumed_from": Path(last).name if last else None,
        }
        if eval_rows:
            stage["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 4)
        return stage

    if eval_rows:
        # The base model's held-out loss, to read the trained loss against.
        baseline = Trainer(
            model=model,
            args=_training_args(
                config, checkpoints / "baseline", has_eval=True, progress=progress, max_steps=-1
            ),
            eval_dataset=eval_rows,  # type: ignore[arg-type]
            data_collator=collator,
        )
        metrics["eval_loss_before"] = round(float(baseline.evaluate()["eval_loss"]), 4)

    if warm_rows:
        done = checkpoints / "warmup" / _WARMUP_DONE
        if resume and done.exists():
            _load_stage_weights(model, checkpoints / "warmup" / "final", config)
            metrics["warmup"] = json.loads(done.read_text())
        else:
            metrics["warmup"] = run_stage("warmup", warm_rows, -1)
            model.save_pretrained(str(checkpoints / "warmup" / "final"))
            done.write_text(json.dumps(metrics["warmup"]))
    metrics["main"] = run_stage("main", main_rows, config.max_steps)

    _save(model, tokenizer, output, config, bool(new_ids))
    record = {
        "metrics": metrics,
        "training": config.model_dump(),
        "data": data_description or {},
    }
    (output / METRICS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return metrics


def _load_stage_weights(model: Any, directory: Path, config: AlignerTrainingConfig) -> None:
    """Restore the weights a finished stage saved (resume after the warm-up)."""
    if config.method == "lora":
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
    else:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)


def _cast_adapter(path: Path, dtype: str) -> None:
    """Rewrite a saved adapter's floating-point tensors in ``dtype``."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    state = {
        k: v.to(target).contiguous() if v.is_floating_point() else v
        for k, v in load_file(str(path)).items()
    }
    save_file(state, str(path), metadata={"format": "pt"})


def _save(
    model: Any, tokenizer: Any, output: Path, config: AlignerTrainingConfig, new_tokens: bool
) -> None:
    tokenizer.padding_side = "left"
    model.config.use_cache = True
    if config.method == "lora":
        target = output / ADAPTER_DIR
        for peft_config in getattr(model, "peft_config", {}).values():
            # Name the base as the user did (an alias travels; a cache path does not).
            peft_config.base_model_name_or_path = config.model
        # New marker rows are saved by trainable_token_indices; the whole resized embedding
        # matrix (tens of MB) need not be.
        model.save_pretrained(str(target), save_embedding_layers=False)
        if config.adapter_dtype != "float32":
            _cast_adapter(target / "adapter_model.safetensors", config.adapter_dtype)
        if new_tokens:
            # The engine takes the tokenizer from the adapter directory and grows the embeddings.
            tokenizer.save_pretrained(str(target))
        aligner = AlignerConfig(
            model=config.model,
            format=config.format,
            criterion=None,
            adapter=ADAPTER_DIR,
            max_new_tokens=config.max_new_tokens,
            handback_opening=config.handback_opening,
        )
    else:
        target = output / FULL_MODEL_DIR
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
        aligner = AlignerConfig(
            model=FULL_MODEL_DIR,
            format=config.format,
            criterion=None,
            max_new_tokens=config.max_new_tokens,
            handback_opening=config.handback_opening,
        )
    (output / CONFIG_NAME).write_text(
        aligner.model_dump_json(indent=2, exclude_defaults=False) + "\n"
    )
