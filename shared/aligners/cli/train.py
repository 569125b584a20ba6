"""``aligners train aligner|inspector``: the same command on a laptop CPU and on GPUs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aligners.cli.data import _check_layout, _check_on_error, _report_errors, read_many

train_app = typer.Typer(help="Train aligners and inspectors.", no_args_is_help=True)


@train_app.command("inspector")
def inspector(
    data: list[Path] = typer.Argument(
        ..., help="Example or triple files (triples give 2 examples)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the trained inspector."),
    criterion: str | None = typer.Option(None, help="Criterion the inspector scores."),
    kind: str = typer.Option("encoder-head", help="'encoder-head' or 'sequence-classifier'."),
    encoder: str = typer.Option("minilm", help="Encoder (encoder-head) or classifier base model."),
    hidden_size: int = typer.Option(0, help="Head hidden units; 0 = logistic regression."),
    epochs: int = typer.Option(30),
    learning_rate: float = typer.Option(1e-3),
    weight_decay: float = typer.Option(1e-4),
    standardize: bool = typer.Option(False, help="Train on standardised features."),
    batch_size: int = typer.Option(64),
    eval_fraction: float = typer.Option(0.2, help="Share of questions held out for metrics."),
    eval_data: list[Path] = typer.Option([], help="Explicit held-out files instead of a split."),
    seed: int = typer.Option(0),
    max_length: int = typer.Option(256),
    cache_dir: Path | None = typer.Option(
        None, help="Embedding cache (default: OUTPUT/../.embedding-cache)."
    ),
    layout: str = typer.Option("auto"),
    on_error: str = typer.Option("skip"),
    limit: int | None = typer.Option(None, help="At most this many records per file."),
    max_steps: int = typer.Option(-1, help="Sequence classifier: stop after this many steps."),
) -> None:
    """Train an inspector and write held-out accuracy, AUROC and calibration next to it."""
    from aligners.training.inspector import InspectorTrainingConfig, train_inspector

    if kind not in ("encoder-head", "sequence-classifier"):
        raise typer.BadParameter("--kind must be 'encoder-head' or 'sequence-classifier'")
    read = read_many(
        data,
        examples=True,
        layout=_check_layout(layout),
        criterion=criterion,
        on_error=_check_on_error(on_error),
        limit=limit,
    )
    _report_errors(read.errors)
    held = None
    if eval_data:
        held_read = read_many(
            eval_data, examples=True, layout=layout, criterion=criterion, on_error=on_error
        )
        _report_errors(held_read.errors)
        held = held_read.records
    config = InspectorTrainingConfig(
        kind=kind,  # type: ignore[arg-type]
        criterion=criterion,
        encoder=encoder,
        hidden_size=hidden_size,
        epochs=epochs,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        standardize=standardize,
        batch_size=batch_size,
        eval_fraction=eval_fraction,
        seed=seed,
        max_length=max_length,
        cache_dir=str(cache_dir if cache_dir is not None else output.parent / ".embedding-cache"),
    )
    description = {
        "files": [p.name for p in data],
        "examples": len(read.records),
        "malformed_rows_skipped": len(read.errors),
    }
    metrics = train_inspector(
        read.records,
        output,
        config,
        evaluation=held,
        data_description=description,
        max_steps=max_steps,
    )
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"saved inspector to {output}")


@train_app.command("aligner")
def aligner(
    data: list[Path] = typer.Argument(..., help="Triple files in any supported layout."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the trained aligner."),
    model: str = typer.Option("smollm2", help="Base causal LM: alias, directory or hub id."),
    format: str = typer.Option("chat", help="Prompt format: chat, ibm, pku, pku-v1 or a template."),
    criterion: str | None = typer.Option(None, help="Criterion for triples that name none."),
    method: str = typer.Option("lora", help="'lora' (small adapter) or 'full' fine-tuning."),
    lora_r: int = typer.Option(8),
    lora_alpha: int = typer.Option(16),
    epochs: float = typer.Option(1.0),
    max_steps: int = typer.Option(-1, help="Stop the main stage after this many steps."),
    learning_rate: float = typer.Option(2e-4),
    batch_size: int = typer.Option(8),
    grad_accum: int = typer.Option(1),
    batching: str = typer.Option(
        "random",
        help="random, or length_buckets: batches of similar length (less padding; worse where "
        "length tracks the kind of example, see docs/training.md).",
    ),
    max_length: int = typer.Option(512, help="Longer examples are skipped (counted)."),
    warmup_fraction: float = typer.Option(0.2, help="Identity warm-up share (Q-A-A); 0 = none."),
    copy_fraction: float = typer.Option(0.0, help="Extra Q-C-C copies so good answers are kept."),
    eval_fraction: float = typer.Option(0.1, help="Share of questions held out for eval loss."),
    eval_data: list[Path] = typer.Option(
        [], help="Explicit held-out triple files instead of a split."
    ),
    eval_steps: int | None = typer.Option(
        None, help="Evaluate every N steps (default: at the end)."
    ),
    save_steps: int = typer.Option(50),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUTPUT."),
    layout: str = typer.Option("auto"),
    on_error: str = typer.Option("skip"),
    limit: int | None = typer.Option(None, help="At most this many records per file."),
    max_new_tokens: int = typer.Option(256, help="Written into aligner_config.json."),
    handback_opening: str | None = typer.Option(
        None,
        help="Written into aligner_config.json: when the aligner hands back an answer its "
        "squad would block, the squad retries with the reply forced to open with this text.",
    ),
    adapter_dtype: str = typer.Option(
        "float32", help="Saved LoRA weights: float32, float16 (half the size) or bfloat16."
    ),
    mixed_precision: str = typer.Option(
        "auto", help="bf16 autocast: auto (GPUs and bf16-capable CPUs), bf16 or no."
    ),
) -> None:
    """Fine-tune an aligner (loss on the correction only); saves a directory Aligner loads."""
    from aligners.training.aligner import AlignerTrainingConfig, train_aligner

    if method not in ("lora", "full"):
        raise typer.BadParameter("--method must be 'lora' or 'full'")
    read = read_many(
        data,
        examples=False,
        layout=_check_layout(layout),
        criterion=criterion,
        on_error=_check_on_error(on_error),
        limit=limit,
    )
    _report_errors(read.errors)
    config = AlignerTrainingConfig(
        model=model,
        format=format,
        criterion=criterion,
        method=method,  # type: ignore[arg-type]
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        grad_accum=grad_accum,
        batching=batching,  # type: ignore[arg-type]
        max_length=max_length,
        warmup_fraction=warmup_fraction,
        copy_fraction=copy_fraction,
        eval_fraction=eval_fraction,
        eval_steps=eval_steps,
        save_steps=save_steps,
        seed=seed,
        max_new_tokens=max_new_tokens,
        handback_opening=handback_opening,
        adapter_dtype=adapter_dtype,  # type: ignore[arg-type]
        mixed_precision=mixed_precision,  # type: ignore[arg-type]
    )
    description = {
        "files": [p.name for p in data],
        "triples": len(read.records),
        "malformed_rows_skipped": len(read.errors),
    }
    held = None
    if eval_data:
        held_read = read_many(eval_data, examples=False, layout=layout, criterion=criterion)
        _report_errors(held_read.errors)
        held = held_read.records
        description["eval_files"] = [p.name for p in eval_data]
    metrics = train_aligner(
        read.records, output, config, evaluation=held, resume=resume, data_description=description
    )
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"saved aligner to {output} (load with Aligner.from_pretrained)")


@train_app.command("cross-encoder")
def cross_encoder(
    data: list[Path] = typer.Argument(..., help="Inspector example files (JSONL)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for trunk and heads."),
    eval_data: list[Path] = typer.Option(
        [], help="Held-out example files (questions from topics never trained on)."
    ),
    criterion: str = typer.Option("ethical", help="Criterion of examples that name none."),
    encoder: str = typer.Option("minilm"),
    trained_layers: int = typer.Option(2, min=1, help="Top encoder layers fine-tuned."),
    max_length: int = typer.Option(256, min=16),
    epochs: float = typer.Option(3.0),
    learning_rate: float = typer.Option(5e-5),
    head_learning_rate: float = typer.Option(1e-3),
    batch_size: int = typer.Option(32),
    calibration_fraction: float = typer.Option(0.1, help="Questions kept out to calibrate on."),
    calibration_salt: str | None = typer.Option(
        None,
        help="Prefix of the hash choosing calibration questions (default: the trainer's; '' "
        "reproduces the shipped gate's calibration).",
    ),
    threshold: float | None = typer.Option(
        None,
        min=0.01,
        max=0.99,
        help="Ship this threshold with every head (an operating point read off a held-out "
        "curve; squads use it unless given another).",
    ),
    flag_recall: float | None = typer.Option(
        None,
        min=0.01,
        max=0.99,
        help="Ship a threshold per head that flags this share of the misaligned calibration "
        "pairs (default: none; squads then use 0.5).",
    ),
    block_threshold: float | None = typer.Option(
        None,
        min=0.01,
        max=0.99,
        help="Ship a block threshold per head: a squad blocks an answer its aligner did not "
        "fix when the head still scores it under this (default: none, never blocks).",
    ),
    seed: int = typer.Option(0),
    max_steps: int = typer.Option(-1, help="Stop after this many steps."),
) -> None:
    """Fine-tune a cross-encoder inspector (MiniLM top layers, one head per criterion)."""
    from aligners.training.cross_encoder import CrossEncoderTrainingConfig, train_cross_encoder

    read = read_many(data, examples=True, layout="auto", criterion=criterion, on_error="skip")
    _report_errors(read.errors)
    held = None
    if eval_data:
        held_read = read_many(eval_data, examples=True, layout="auto", criterion=criterion)
        _report_errors(held_read.errors)
        held = held_read.records
    config = CrossEncoderTrainingConfig(
        encoder=encoder,
        criterion=criterion,
        trained_layers=trained_layers,
        max_length=max_length,
        epochs=epochs,
        learning_rate=learning_rate,
        head_learning_rate=head_learning_rate,
        batch_size=batch_size,
        calibration_fraction=calibration_fraction,
        threshold=threshold,
        flag_recall=flag_recall,
        block_threshold=block_threshold,
        seed=seed,
    )
    if calibration_salt is not None:
        config = config.model_copy(update={"calibration_salt": calibration_salt})
    metrics = train_cross_encoder(
        read.records, output, config, evaluation=held, max_steps=max_steps
    )
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"saved cross-encoder inspector to {output}")


def _read_requests(paths: list[Path]) -> list[Any]:
    """Request examples from JSONL files, with the file and line of any bad row."""
    from pydantic import ValidationError

    from aligners.data.records import RequestExample

    rows = []
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"no such file: {path}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(RequestExample.model_validate_json(line))
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(str(p) for p in problem["loc"]) or "row"
                raise typer.BadParameter(
                    f"{path}:{number}: {where}: {problem['msg']} (rows need 'request' and "
                    "'label': 1 fine to answer, 0 harmful)"
                ) from None
    return rows


@train_app.command("request-inspector")
def request_inspector(
    data: list[Path] = typer.Argument(..., help="Request files (JSONL: request, label)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the head."),
    eval_data: list[Path] = typer.Option(
        [], help="Held-out request files (topics never trained on)."
    ),
    encoder: str = typer.Option("minilm"),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="Shipped threshold on P(fine)."),
    weight_decay: float = typer.Option(1e-3, min=0.0),
) -> None:
    """Train a request inspector (frozen MiniLM + logistic head): is a request fine to answer?"""
    from aligners.training.request_inspector import (
        RequestInspectorTrainingConfig,
        train_request_inspector,
    )

    train_rows = _read_requests(data)
    held = _read_requests(eval_data) if eval_data else []
    config = RequestInspectorTrainingConfig(
        encoder=encoder, threshold=threshold, weight_decay=weight_decay
    )
    metrics = train_request_inspector(train_rows, held, output, config)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"saved request inspector to {output}")


@train_app.command("safety-gate")
def safety_gate(
    rows: Path = typer.Argument(..., help="gate_rows.jsonl from `aligners data traffic`."),
    requests: Path = typer.Option(
        ..., "--requests", help="requests.jsonl from `aligners data traffic`."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the gate."),
    request_output: Path | None = typer.Option(
        None, "--request-output", help="Also save the request head as a request check here."
    ),
    encoder: str = typer.Option("minilm", help="Frozen sentence encoder (alias or path)."),
    good_flag_rate: float = typer.Option(
        0.02,
        min=0.0001,
        max=0.5,
        help="Flag threshold: at most this share of validation aligned answers flagged.",
    ),
    alarming_flag_rate: float = typer.Option(
        0.03,
        min=0,
        max=0.5,
        help="Flag threshold: also at most this share of validation good answers to "
        "alarming-but-safe requests flagged (0: that rule off).",
    ),
    block_threshold: float | None = typer.Option(
        None, min=0, max=1, help="Shipped block threshold (default: the flag threshold)."
    ),
    request_safe_turned_away: float = typer.Option(
        0.02,
        min=0.0001,
        max=0.5,
        help="Request threshold: at most this share of validation safe requests turned away.",
    ),
    weight_decay: float = typer.Option(1e-3, min=0),
    request_trained_layers: int = typer.Option(
        0,
        min=0,
        help="Fine-tune this many top MiniLM layers for the gate's request head (0: frozen).",
    ),
    request_epochs: int = typer.Option(3, min=1),
    request_learning_rate: float = typer.Option(1e-4, min=0),
    trunk_on_answers: bool = typer.Option(
        False,
        help="Fine-tune the trunk on the answers' harmful content too, and let the answer heads "
        "read through it (needs --request-trained-layers).",
    ),
    content_from_reviews: bool = typer.Option(
        False,
        help="Compliant answers a reviewer read as harmless (metadata.review 'ok', from "
        "`aligners data traffic --reviews`) are not harmful content for the content head.",
    ),
    content_head_from_reviews: bool = typer.Option(
        False,
        help="The content head (not the trunk) learns only reviewed harm: a compliant answer a "
        "reviewer read as harmless (metadata.review 'ok') is not harmful content for it (the "
        "shipped gate's setting since 2026-12-08).",
    ),
    combine_features: str = typer.Option(
        "request_and_complies,harm_either",
        help="What the combination fitted on validation reads, comma-separated: request, "
        "complies, content, request_and_complies, harm_either (the noisy-or of 'harmful request "
        "and complies' and 'harmful content in a complying answer'), lead_request and harm_lead "
        "(the request head on the answer's first sentence; one more trunk pass); the shipped "
        "gate reads request,complies,harm_either.",
    ),
    cache_file: Path | None = typer.Option(None, help="Embedding cache (reruns are cheap)."),
    seed: int = typer.Option(0, help="Seed of the trunk's fine-tuning and the heads' fits."),
) -> None:
    """Train the safety gate (harmful request x complies x harmful content on MiniLM)
    and, with --request-output, the request check; thresholds chosen on the validation split."""
    import json

    from aligners.data import read_examples
    from aligners.inspector.safety_gate import check_combine_features
    from aligners.training.safety_gate import SafetyGateTrainingConfig, train_safety_gate

    try:
        features = check_combine_features(
            [name.strip() for name in combine_features.split(",") if name.strip()]
        )
    except ValueError as error:
        raise typer.BadParameter(f"--combine-features: {error}") from None
    read = read_examples(rows, on_error="raise")
    request_rows = [
        json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines() if line
    ]
    config = SafetyGateTrainingConfig(
        encoder=encoder,
        good_flag_rate=good_flag_rate,
        alarming_flag_rate=alarming_flag_rate or None,
        block_threshold=block_threshold,
        request_safe_turned_away=request_safe_turned_away,
        weight_decay=weight_decay,
        request_trained_layers=request_trained_layers,
        request_epochs=request_epochs,
        request_learning_rate=request_learning_rate,
        trunk_on_answers=trunk_on_answers,
        content_from_reviews=content_from_reviews,
        content_head_from_reviews=content_head_from_reviews,
        combine_features=features,
        seed=seed,
    )
    metrics = train_safety_gate(
        read.records,
        request_rows,
        output,
        config,
        request_output_dir=request_output,
        cache_file=cache_file,
        log=typer.echo,
    )
    typer.echo(json.dumps({k: metrics[k] for k in ("validation", "heldout")}, indent=2))


@train_app.command("grounded")
def grounded(
    data: Path = typer.Argument(
        ..., help="Folder from `aligners data grounding` (or pairs.jsonl)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the grounded model."),
    encoder: str = typer.Option("minilm"),
    trained_layers: int = typer.Option(3, min=1, help="Top MiniLM layers fine-tuned."),
    max_length: int = typer.Option(160, min=16, help="Tokens of passage + claim."),
    epochs: float = typer.Option(2.0),
    learning_rate: float = typer.Option(1e-4),
    batch_size: int = typer.Option(32),
    max_train_pairs: int = typer.Option(10000, min=0, help="Subsample training pairs (0: all)."),
    keep_source: list[str] = typer.Option(
        [],
        "--keep-source",
        help="A source whose train pairs are all kept (repeatable: begin_dev, faithdial_audit); "
        "the others fill the rest of --max-train-pairs.",
    ),
    save_steps: int = typer.Option(100, min=0, help="Checkpoint every N steps (0: never)."),
    resume: bool = typer.Option(False, help="Continue from OUTPUT/checkpoint.pt."),
    max_steps: int = typer.Option(-1, help="Stop after this many steps."),
    seed: int = typer.Option(0),
) -> None:
    """Fine-tune the grounded cross-encoder (head `grounded`: P(claim supported by passage));
    calibrated and thresholded on the validation split, measured on the held-out split."""
    from aligners.data.grounding import read_answers, read_pairs
    from aligners.training.grounded import GroundedTrainingConfig, train_grounded

    folder = data if data.is_dir() else data.parent
    pairs_file = folder / "pairs.jsonl" if data.is_dir() else data
    if not pairs_file.exists():
        raise typer.BadParameter(f"no pairs file at {pairs_file}")
    answers_file = folder / "answers.jsonl"
    answers = read_answers(answers_file) if answers_file.exists() else []
    config = GroundedTrainingConfig(
        encoder=encoder,
        trained_layers=trained_layers,
        max_length=max_length,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_train_pairs=max_train_pairs or None,
        keep_sources=keep_source,
        save_steps=save_steps,
        seed=seed,
    )
    metrics = train_grounded(
        read_pairs(pairs_file), output, config, answers=answers, max_steps=max_steps, resume=resume
    )
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"saved grounded model to {output}")


@train_app.command("evaluate-grounded")
def evaluate_grounded_command(
    model_dir: Path = typer.Argument(..., help="A grounded model directory."),
    data: Path = typer.Argument(..., help="Folder from `aligners data grounding` (or pairs file)."),
    split: str = typer.Option("heldout", help="Rows of this split are measured."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report as JSON."),
    latency_runs: int = typer.Option(
        0, min=0, help="Also time a 5-sentence answer against ~1,000 context tokens, N runs."
    ),
) -> None:
    """Pair-level and answer-level numbers of a grounded model, with the length-only baseline;
    optionally the median latency of one answer."""
    from aligners.data.grounding import read_answers, read_pairs
    from aligners.training.grounded import evaluate_grounded, latency_answer, measure_latency

    folder = data if data.is_dir() else data.parent
    pairs = [p for p in read_pairs(folder / "pairs.jsonl" if data.is_dir() else data)]
    answers_file = folder / "answers.jsonl"
    answers = read_answers(answers_file) if answers_file.exists() else []
    report = evaluate_grounded(
        model_dir,
        [p for p in pairs if p.split == split],
        [a for a in answers if a.split == split],
    )
    if latency_runs:
        answer, tokens = latency_answer(answers, model_dir)
        report["latency"] = measure_latency(model_dir, answer, repeats=latency_runs) | {
            "context_tokens": tokens,
            "sentences": len(answer.sentence_labels or []),
        }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(json.dumps(report, indent=2))


@train_app.command("evaluate-aligner")
def evaluate_aligner_command(
    aligner_dir: str = typer.Argument(..., help="Trained aligner directory (or base model)."),
    data: list[Path] = typer.Argument(..., help="Held-out triple files."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report as JSON."),
    criterion: str | None = typer.Option(None),
    layout: str = typer.Option("auto"),
    limit: int | None = typer.Option(None, help="At most this many triples per file."),
    max_new_tokens: int = typer.Option(256),
    batch_size: int = typer.Option(8),
) -> None:
    """chrF/ROUGE-L gain vs the original answer, unchanged rate on good answers, degenerate rate."""
    from aligners.aligner import Aligner
    from aligners.training.evaluate import evaluate_aligner

    read = read_many(
        data, examples=False, layout=_check_layout(layout), criterion=criterion, limit=limit
    )
    _report_errors(read.errors)
    model = Aligner.from_pretrained(
        aligner_dir, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    report = evaluate_aligner(model, read.records, progress=True, batch_size=batch_size)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if k != "examples"}
    typer.echo(json.dumps(summary, indent=2))


def register(app: typer.Typer) -> None:
    """Add the ``train`` verb group to the main CLI."""
    app.add_typer(train_app, name="train")
