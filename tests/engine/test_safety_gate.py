"""The safety gate: training on a tiny random encoder, save/load, what it explains, and the squad
blocking what its aligner hands back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aligners import (
    Aligner,
    EncoderRequestInspector,
    SafetyGateInspector,
    Squad,
    SquadMember,
    get_criterion,
    load_inspector,
)
from aligners.backends.encoder import SentenceEncoder
from aligners.data.records import InspectorExample
from aligners.inspector.safety_gate import (
    LEAD_WORDS,
    LEGACY_COMBINE_FEATURES,
    SafetyGateConfig,
    answer_lead,
    combine_features,
)
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE
from aligners.training.safety_gate import (
    SafetyGateTrainingConfig,
    fit_logistic,
    flag_threshold,
    gate_metrics,
    train_safety_gate,
)
from tests.engine.conftest import ConstantBackend

# The tiny random encoder knows no meanings: words it can tell apart stand in for the three
# questions (a harmful request, an answer that complies, harmful content).
HARMFUL_Q = ["hurt the dog", "hurt a fox", "hurt them"]
SAFE_Q = ["what is the capital of france", "how do i bake bread at home", "tell me about the fox"]
COMPLY = "the quick brown fox jumps over the lazy dog and then"
REFUSE = "no"
GOOD = "bake bread with flour water yeast and salt"


def _rows(split: str, copies: int) -> list[InspectorExample]:
    rows = []
    for i in range(copies):
        for q in HARMFUL_Q:
            for answer, kind in ((f"{COMPLY} {i}", "compliant"), (REFUSE, "safe")):
                rows.append(_row(f"{q} {i}", answer, kind, split))
        for q in SAFE_Q:
            rows.append(_row(f"{q} {i}", f"{GOOD} {i}", "good", split))
    return rows


def _row(question: str, answer: str, kind: str, split: str) -> InspectorExample:
    return InspectorExample(
        question=question,
        answer=answer,
        label=int(kind != "compliant"),
        metadata={"kind": kind, "split": split, "family": f"family-{kind}"},
    )


def _requests() -> list[dict[str, object]]:
    return [
        {"request": f"{q} {i}", "label": label, "source": "s", "topic": "t", "split": split}
        for split, copies in (("train", 8), ("validation", 4), ("test", 3))
        for i in range(copies)
        for q, label in [(h, 0) for h in HARMFUL_Q] + [(s, 1) for s in SAFE_Q]
    ]


@pytest.fixture(scope="module")
def trained(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gate")
    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    config = SafetyGateTrainingConfig(encoder=str(tiny_encoder_dir), weight_decay=1e-4)
    train_safety_gate(
        rows,
        _requests(),
        out / "gate",
        config,
        request_output_dir=out / "request",
        progress=False,
        log=lambda _: None,
    )
    return out


def test_gate_learns_round_trips_and_ships_its_thresholds(
    trained: Path, tiny_encoder_dir: Path
) -> None:
    config = json.loads((trained / "gate" / "inspector_config.json").read_text())
    assert config["kind"] == "safety-gate" and config["block_threshold"] == config["threshold"]
    metrics = config["metrics"]
    assert metrics["validation"]["auroc"] > 0.9 and metrics["heldout"]["auroc"] > 0.9
    assert metrics["validation"]["aligned_flag_rate"] <= 0.02
    assert set(metrics["heldout_by_family"]) == {"family-compliant", "family-good", "family-safe"}
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    gate = SafetyGateInspector.from_pretrained(trained / "gate", encoder=encoder)
    again = SafetyGateInspector.from_pretrained(
        gate.save_pretrained(trained / "again"), encoder=encoder
    )
    questions, answers = [f"{HARMFUL_Q[0]} 1", f"{SAFE_Q[0]} 1"], [f"{COMPLY} 1", f"{GOOD} 1"]
    scores = gate.score_batch(questions, answers)
    assert scores == pytest.approx(again.score_batch(questions, answers))
    assert scores[0] < gate.default_threshold <= scores[1]
    assert gate.default_block_threshold == gate.default_threshold and gate.name == "ethical"


def test_explain_names_each_question_of_the_gate(trained: Path, tiny_encoder_dir: Path) -> None:
    gate = SafetyGateInspector.from_pretrained(
        trained / "gate", encoder=SentenceEncoder(str(tiny_encoder_dir))
    )
    harmful, refused = gate.explain([f"{HARMFUL_Q[1]} 2"] * 2, [f"{COMPLY} 2", REFUSE])
    assert set(harmful) == {"harmful_request", "complies", "harmful_content", "aligned"}
    assert harmful["harmful_request"] > 0.5 and harmful["complies"] > refused["complies"]
    assert harmful["aligned"] < refused["aligned"]


def test_load_inspector_reads_the_gate_and_checks_its_criterion(trained: Path) -> None:
    assert isinstance(load_inspector(trained / "gate"), SafetyGateInspector)
    with pytest.raises(ValueError, match="inspects 'ethical', not 'helpful'"):
        load_inspector(trained / "gate", criterion="helpful")
    with pytest.raises(ValueError, match="not a safety gate"):
        SafetyGateInspector.from_pretrained(trained / "request")
    with pytest.raises(FileNotFoundError, match="inspector_config.json"):
        SafetyGateInspector.from_pretrained(trained / "missing")


def test_request_head_ships_as_the_request_check(trained: Path, tiny_encoder_dir: Path) -> None:
    check = EncoderRequestInspector.from_pretrained(
        trained / "request", encoder=SentenceEncoder(str(tiny_encoder_dir))
    )
    metrics = check.config.metrics
    assert metrics["validation"]["safe_turned_away"] <= 0.02
    assert metrics["heldout"]["auroc"] > 0.9
    harmful, safe = check.check_batch([f"{HARMFUL_Q[2]} 9", f"{SAFE_Q[1]} 9"])
    assert harmful.score < safe.score


def test_squad_blocks_what_the_aligner_hands_back_and_keeps_what_it_fixes(
    trained: Path, tiny_encoder_dir: Path
) -> None:
    gate = SafetyGateInspector.from_pretrained(
        trained / "gate", encoder=SentenceEncoder(str(tiny_encoder_dir))
    )
    question, harmful = f"{HARMFUL_Q[0]} 3", f"{COMPLY} 3"

    def squad(rewrite_to: str) -> Squad:
        aligner = Aligner("constant", backend=ConstantBackend(rewrite_to), format="chat")
        member = SquadMember(
            get_criterion("ethical"),
            aligner,
            gate,
            gate.default_threshold,
            block_threshold=gate.default_block_threshold,
        )
        return Squad([member])

    handed_back = squad(harmful).align(question, harmful)
    assert (handed_back.action, handed_back.text) == ("blocked", DEFAULT_BLOCKED_MESSAGE)
    assert "after rewriting" in (handed_back.block_reason or "")
    refused = squad(REFUSE).align(question, harmful)
    assert (refused.action, refused.text) == ("rewritten", REFUSE)
    good = squad(REFUSE).align(f"{SAFE_Q[0]} 3", f"{GOOD} 3")
    assert (good.action, good.text) == ("passed", f"{GOOD} 3")


def test_training_needs_train_and_validation_rows(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    config = SafetyGateTrainingConfig(encoder=str(tiny_encoder_dir))
    with pytest.raises(ValueError, match="train and validation"):
        train_safety_gate(_rows("train", 2), _requests(), tmp_path, config, progress=False)


def test_fit_logistic_needs_both_labels_and_separates_them() -> None:
    import torch

    x = torch.tensor([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.2]])
    w, b = fit_logistic(x, [0, 0, 1, 1], weight_decay=1e-4)
    logits = x @ w + b
    assert bool((logits[2:] > 0).all()) and bool((logits[:2] < 0).all())
    with pytest.raises(ValueError, match="both labels"):
        fit_logistic(x, [1, 1, 1, 1], weight_decay=0.0)


def test_fit_logistic_counts_each_row_its_sample_weight() -> None:
    import torch

    x = torch.tensor([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.2], [0.8, 0.3]])
    # a zero weight drops a row; a weight of 2 counts it twice
    w0, b0 = fit_logistic(x, [0, 0, 1, 1, 0], weight_decay=1e-3, sample_weight=[1, 1, 1, 1, 0])
    w1, b1 = fit_logistic(x[:4], [0, 0, 1, 1], weight_decay=1e-3)
    assert torch.allclose(w0, w1, atol=1e-3) and torch.allclose(b0, b1, atol=1e-3)
    w2, b2 = fit_logistic(x, [0, 0, 1, 1, 0], weight_decay=1e-3, sample_weight=[2, 1, 1, 1, 1])
    twice = torch.cat([x[:1], x])
    w3, b3 = fit_logistic(twice, [0, 0, 0, 1, 1, 0], weight_decay=1e-3)
    assert torch.allclose(w2, w3, atol=1e-3) and torch.allclose(b2, b3, atol=1e-3)
    with pytest.raises(ValueError, match="weight on both labels"):
        fit_logistic(x, [0, 0, 1, 1, 0], weight_decay=0.0, sample_weight=[1, 1, 0, 0, 1])


def test_alarming_but_safe_answers_keep_the_threshold_under_them(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    # A good answer to an alarming-but-safe request that reads like a compliant one: the 2 %
    # rule alone may flag it; the alarming rule puts the threshold under its score.
    alarming = _row(f"{HARMFUL_Q[0]} 9", f"{COMPLY} 9", "good", "validation")
    alarming.metadata["source"] = "smollm2-alarming"
    rows = _rows("train", 8) + _rows("validation", 4) + [alarming] + _rows("test", 3)
    saved = {}
    for name, rate in (("plain", None), ("alarming", 0.03)):
        config = SafetyGateTrainingConfig(
            encoder=str(tiny_encoder_dir),
            weight_decay=1e-4,
            good_flag_rate=0.2,  # loose, so the plain rule flags the lowest aligned answers
            alarming_flag_rate=rate,
        )
        train_safety_gate(
            rows, _requests(), tmp_path / name, config, progress=False, log=lambda _: None
        )
        saved[name] = SafetyGateInspector.from_pretrained(
            tmp_path / name, encoder=SentenceEncoder(str(tiny_encoder_dir))
        )
    score = saved["alarming"].score(alarming.question, alarming.answer)
    assert saved["alarming"].config.threshold <= score < saved["plain"].config.threshold
    assert saved["alarming"].config.threshold <= saved["plain"].config.threshold
    assert "alarming-but-safe" in saved["alarming"].config.metrics["threshold_rule"]
    assert "too few" in saved["alarming"].config.metrics["threshold_rule"]  # one answer
    assert "alarming" not in saved["plain"].config.metrics["threshold_rule"]


def test_the_alarming_rule_lets_an_outlier_through_only_with_enough_answers() -> None:
    def alarming_rows(n: int) -> list[InspectorExample]:
        rows = [_row(f"q{i}", "a", "good", "validation") for i in range(n)]
        for row in rows:
            row.metadata["source"] = "smollm2-alarming"
        return rows

    # One outlier (0.01) among answers scored 0.5 and up; aligned answers alone allow 0.4.
    aligned = [_row(f"g{i}", "a", "good", "validation") for i in range(100)]
    aligned_scores = [0.4 + i / 1000 for i in range(100)]
    for n, expected in ((25, 0.01), (40, 0.4)):
        scores = [0.01] + [0.5 + i / 100 for i in range(n - 1)]
        threshold, rule = flag_threshold(
            aligned_scores + scores, aligned + alarming_rows(n), 0.01, 0.03
        )
        assert threshold == expected
        assert ("too few" in rule) == (n == 25)


def test_gate_metrics_counts_f1_for_harmful_answers() -> None:
    rows = [_row("q", "a", kind, "test") for kind in ("compliant", "compliant", "good", "safe")]
    metrics = gate_metrics([0.1, 0.9, 0.2, 0.8], rows, threshold=0.5)
    # flagged: row 0 (compliant, right) and row 2 (good, wrong); row 1 missed
    assert metrics["precision_harmful"] == 0.5 and metrics["recall_harmful"] == 0.5
    assert metrics["f1_harmful"] == 0.5 and metrics["flag_rate"]["good"] == 1.0
    assert metrics["aligned_flag_rate"] == 0.5


def _tuned_trunk_config(encoder_dir: Path, **extra: object) -> SafetyGateTrainingConfig:
    """A gate whose top encoder layer is fine-tuned, quickly, on the tiny encoder."""
    return SafetyGateTrainingConfig.model_validate(
        {
            "encoder": str(encoder_dir),
            "weight_decay": 1e-4,
            "request_trained_layers": 1,
            "request_epochs": 2,
            "request_learning_rate": 1e-3,
            **extra,
        }
    )


def test_gate_with_a_fine_tuned_request_model_ships_its_layers_and_round_trips(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    config = _tuned_trunk_config(tiny_encoder_dir)
    train_safety_gate(
        rows,
        _requests(),
        tmp_path / "gate",
        config,
        request_output_dir=tmp_path / "request",
        progress=False,
        log=lambda _: None,
    )
    saved = json.loads((tmp_path / "gate" / "inspector_config.json").read_text())
    assert saved["request_trained_layers"] == 1
    assert (tmp_path / "gate" / "request_trunk.safetensors").exists()
    # The request check reads through the gate's fine-tuned trunk, named, not copied.
    assert not (tmp_path / "request" / "request_trunk.safetensors").exists()
    check_config = json.loads((tmp_path / "request" / "inspector_config.json").read_text())
    assert check_config["trunk"] == "../gate/request_trunk.safetensors"
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    gate = SafetyGateInspector.from_pretrained(tmp_path / "gate", encoder=encoder)
    check = EncoderRequestInspector.from_pretrained(tmp_path / "request", encoder=encoder)
    requests = [f"{HARMFUL_Q[0]} 1", f"{SAFE_Q[0]} 1"]
    with torch.inference_mode():
        request_logits = gate.heads["request"](gate.request_features(requests))[:, 0]
    expected = [float(x) for x in torch.sigmoid(-request_logits)]
    assert check.score_batch(requests) == pytest.approx(expected, abs=1e-5)
    moved = EncoderRequestInspector.from_pretrained(
        check.save_pretrained(tmp_path / "elsewhere" / "deeper"), encoder=encoder
    )
    assert moved.score_batch(requests) == pytest.approx(expected, abs=1e-5)
    (tmp_path / "gate" / "request_trunk.safetensors").rename(tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match="fine-tuned trunk"):
        EncoderRequestInspector.from_pretrained(tmp_path / "request", encoder=encoder)
    (tmp_path / "gone").rename(tmp_path / "gate" / "request_trunk.safetensors")
    again = SafetyGateInspector.from_pretrained(
        gate.save_pretrained(tmp_path / "again"), encoder=encoder
    )
    questions = [f"{HARMFUL_Q[0]} 1", f"{SAFE_Q[0]} 1", ""]
    answers = [f"{COMPLY} 1", f"{GOOD} 1", f"{COMPLY} 1"]
    scores = gate.score_batch(questions, answers)
    assert scores == pytest.approx(again.score_batch(questions, answers), abs=1e-5)
    assert scores[0] < scores[1]
    explained = gate.explain(questions[:1], answers[:1])[0]
    assert explained["harmful_request"] > 0.5


def test_a_trunk_trained_on_answers_too_serves_the_answer_heads_and_round_trips(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    config = _tuned_trunk_config(tiny_encoder_dir, trunk_on_answers=True, answer_max_length=32)
    metrics = train_safety_gate(
        rows, _requests(), tmp_path / "gate", config, progress=False, log=lambda _: None
    )
    saved = json.loads((tmp_path / "gate" / "inspector_config.json").read_text())
    assert saved["answers_through_trunk"] is True
    assert saved["answer_max_length"] == 32
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    gate = SafetyGateInspector.from_pretrained(tmp_path / "gate", encoder=encoder)
    answers = [f"{COMPLY} 1", REFUSE]
    # The answer heads read the fine-tuned trunk's states, not the frozen embedding.
    through_trunk = gate.answer_features(answers)
    assert not torch.allclose(through_trunk, encoder.encode(answers), atol=1e-3)
    test = [r for r in rows if r.metadata["split"] == "test"]
    scores = gate.score_batch([r.question for r in test], [r.answer for r in test])
    # What was measured at training time is what the loaded gate scores.
    assert gate_metrics(scores, test, gate.config.threshold)["auroc"] == pytest.approx(
        metrics["heldout"]["auroc"], abs=1e-3
    )


def test_answers_through_the_trunk_need_a_trunk() -> None:
    with pytest.raises(ValueError, match="request_trained_layers"):
        SafetyGateTrainingConfig(trunk_on_answers=True)
    with pytest.raises(ValueError, match="request_trained_layers"):
        SafetyGateConfig(answers_through_trunk=True)


def test_harm_either_lets_harmful_content_outweigh_a_harmless_request() -> None:
    # request, complies, content logits: harm given to a harmless question; a refusal of a
    # harmful one; a good answer to a harmless one
    logits = torch.tensor([[-6.0, 4.0, 5.0], [6.0, -5.0, 1.0], [-6.0, 4.0, -5.0]])
    legacy = combine_features(logits)
    assert torch.equal(legacy, combine_features(logits, LEGACY_COMBINE_FEATURES))
    assert torch.equal(legacy[:, :3], logits)
    either = combine_features(logits, ["harm_either"])[:, 0]
    p = torch.sigmoid(logits)
    expected = 1 - (1 - p[:, 0] * p[:, 1]) * (1 - p[:, 2] * p[:, 1])
    assert torch.allclose(torch.sigmoid(either), expected, atol=1e-5)
    # "request and complies" misses the first row; the noisy-or reads its content
    both = combine_features(logits, ["request_and_complies"])[:, 0]
    assert float(both[0]) < -5 and float(either[0]) > 3
    # a refusal's content does not count: it does not comply
    assert float(either[1]) < -4 and float(either[2]) < -4
    with pytest.raises(ValueError, match="unknown combine_features"):
        combine_features(logits, ["request", "nope"])


def test_the_combination_names_its_features_and_old_configs_read_the_legacy_four() -> None:
    assert SafetyGateConfig(combine_weights=[1, 2, 3, 4]).combine_features == list(
        LEGACY_COMBINE_FEATURES
    )
    with pytest.raises(ValueError, match="unknown combine_features"):
        SafetyGateConfig(combine_features=["content", "verdict"], combine_weights=[1, 1])
    with pytest.raises(ValueError, match="2 combine_features but 4 combine_weights"):
        SafetyGateConfig(combine_features=["content", "harm_either"])
    with pytest.raises(ValueError, match="unknown combine_features"):
        SafetyGateTrainingConfig(combine_features=["harm"])


def test_the_answer_lead_is_the_opening_an_answer_restates() -> None:
    assert answer_lead("## Title: How to Rob a Train\n\nYou need...") == "How to Rob a Train"
    assert answer_lead("**To kill a stuck process,** run `kill PID`. Then check.") == (
        "To kill a stuck process,** run `kill PID`."
    )
    assert answer_lead("Sure, here's how: 1. Buy a lens.") == "Sure, here's how:"
    assert answer_lead(" ".join(["word"] * 100)).split() == ["word"] * LEAD_WORDS
    assert answer_lead("") == ""


def test_harm_lead_reads_harm_an_answer_restates_after_a_harmless_question() -> None:
    # request, complies, content, lead logits: harm restated in an answer to a harmless
    # question the content head misses; a refusal naming the act; a good answer
    logits = torch.tensor(
        [[-6.0, 4.0, -3.0, 5.0], [-6.0, -5.0, -3.0, 5.0], [-6.0, 4.0, -5.0, -5.0]]
    )
    lead = combine_features(logits, ["harm_lead"])[:, 0]
    either = combine_features(logits, ["harm_either"])[:, 0]
    p = torch.sigmoid(logits)
    expected = 1 - (1 - torch.sigmoid(either)) * (1 - p[:, 3] * p[:, 1])
    assert torch.allclose(torch.sigmoid(lead), expected, atol=1e-5)
    assert float(either[0]) < -2 and float(lead[0]) > 3
    # a refusal's lead names the act but it does not comply
    assert float(lead[1]) < -4 and float(lead[2]) < -4
    assert torch.equal(combine_features(logits, ["lead_request"])[:, 0], logits[:, 3])
    with pytest.raises(ValueError, match="read the answer's lead"):
        combine_features(logits[:, :3], ["request", "harm_lead"])


@pytest.mark.parametrize(
    "features", [["request", "complies", "harm_either"], ["request", "complies", "harm_lead"]]
)
def test_a_gate_trained_on_chosen_features_ships_them_and_round_trips(
    tiny_encoder_dir: Path, tmp_path: Path, features: list[str]
) -> None:
    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    config = SafetyGateTrainingConfig(
        encoder=str(tiny_encoder_dir), weight_decay=1e-4, combine_features=features
    )
    metrics = train_safety_gate(
        rows, _requests(), tmp_path / "gate", config, progress=False, log=lambda _: None
    )
    saved = json.loads((tmp_path / "gate" / "inspector_config.json").read_text())
    assert saved["combine_features"] == features and len(saved["combine_weights"]) == 3
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    gate = SafetyGateInspector.from_pretrained(tmp_path / "gate", encoder=encoder)
    test = [r for r in rows if r.metadata["split"] == "test"]
    scores = gate.score_batch([r.question for r in test], [r.answer for r in test])
    assert gate_metrics(scores, test, gate.config.threshold)["auroc"] == pytest.approx(
        metrics["heldout"]["auroc"], abs=1e-4
    )
    # the score is the two-feature combination of the loaded heads' logits
    with torch.inference_mode():
        logits = gate.head_logits(*gate.embed([test[0].question], [test[0].answer]))
    weights = torch.tensor(saved["combine_weights"])
    expected = 1 - torch.sigmoid(
        combine_features(logits, features) @ weights + saved["combine_bias"]
    )
    assert scores[0] == pytest.approx(float(expected[0]), abs=1e-5)
    assert logits.shape[-1] == (4 if "harm_lead" in features else 3)
    explained = gate.explain([test[0].question], [test[0].answer])[0]
    assert ("harmful_lead" in explained) == ("harm_lead" in features)
    assert explained["aligned"] == pytest.approx(scores[0], abs=1e-4)


def test_cli_trains_a_gate_on_the_features_it_names(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aligners.cli.main import app

    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    data, requests = tmp_path / "rows.jsonl", tmp_path / "requests.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    requests.write_text("".join(json.dumps(r) + "\n" for r in _requests()))
    base = ["train", "safety-gate", str(data), "--requests", str(requests)]
    base += ["--encoder", str(tiny_encoder_dir), "-o", str(tmp_path / "gate")]
    runner = CliRunner()
    result = runner.invoke(
        app, [*base, "--combine-features", "request, harm_either", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "gate" / "inspector_config.json").read_text())
    assert saved["combine_features"] == ["request", "harm_either"]
    result = runner.invoke(
        app, [*base, "--combine-features", "content,verdict"], env={"COLUMNS": "400"}
    )
    assert result.exit_code != 0 and "unknown combine_features ['verdict']" in result.output


def test_the_content_head_learns_only_reviewed_harm(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    # a compliant answer whose text a reviewer read as harmless (metadata.review "ok"): it
    # still complies, but is no harmful content for the content head
    vague = "a long essay about many things in general terms"
    rows = _rows("train", 8) + _rows("validation", 4) + _rows("test", 3)
    for i in range(8):
        row = _row(f"{HARMFUL_Q[i % 3]} vague {i}", vague, "compliant", "train")
        row.metadata["review"] = "ok"
        rows.append(row)
    encoder = SentenceEncoder(str(tiny_encoder_dir))
    content = {}
    for reviewed in (True, False):
        config = SafetyGateTrainingConfig(
            encoder=str(tiny_encoder_dir), weight_decay=1e-4, content_head_from_reviews=reviewed
        )
        out = tmp_path / f"gate-{reviewed}"
        train_safety_gate(rows, _requests(), out, config, progress=False, log=lambda _: None)
        gate = SafetyGateInspector.from_pretrained(out, encoder=encoder)
        (explained,) = gate.explain([f"{HARMFUL_Q[0]} vague 0"], [vague])
        content[reviewed] = explained["harmful_content"]
        assert explained["complies"] > 0.5  # the complies head learns it either way
    assert content[True] < 0.5 < content[False]
