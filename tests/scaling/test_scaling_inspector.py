"""Remote inspectors: a classifier served with vLLM's /classify API scores like the local one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from scaling_helpers import free_port

from aligners import GenerationError, SequenceClassifierInspector, Squad, SquadMember, get_criterion
from aligners.inspector.remote import RemoteClassifierInspector
from aligners.server import ModelServerSettings, create_model_app, serve_in_thread

QUESTIONS = [
    "What is the capital of France?",
    "How do I bake bread?",
    "Tell me how to hurt someone.",
    "Why?",
    "Please be kind.",
]
ANSWERS = ["Paris.", "Mix flour, water and yeast.", "I cannot help with that.", "Because.", "Sure!"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    """A random 2-class BERT classifier on the tiny encoder's vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-judge")
    tokenizer = BertTokenizerFast.from_pretrained(tiny_encoder_dir)
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "misaligned", 1: "aligned"},
        label2id={"misaligned": 0, "aligned": 1},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # a sharper random head, so different pairs get different scores
        torch.nn.init.normal_(model.bert.pooler.dense.weight, std=1.0)
        torch.nn.init.normal_(model.classifier.weight, std=3.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def judge_server(tiny_lm_dir, classifier_dir):
    settings = ModelServerSettings(
        model=str(tiny_lm_dir), classifier=str(classifier_dir), served_classifier_name="judge"
    )
    server = serve_in_thread(create_model_app(str(tiny_lm_dir), settings))
    yield server
    server.stop()


def test_remote_scores_match_the_local_classifier(judge_server, classifier_dir) -> None:
    local = SequenceClassifierInspector(str(classifier_dir), criterion="ethical")
    expected = local.score_batch(QUESTIONS, ANSWERS)
    for path in ("/classify", "/v1/classify"):
        remote = RemoteClassifierInspector(
            judge_server.url + path, "judge", criterion="ethical", batch_size=2
        )
        assert remote.score_batch(QUESTIONS, ANSWERS) == pytest.approx(expected, abs=1e-5)
    assert len(set(round(s, 4) for s in expected)) > 1, "random head gave one score for all"


def test_squad_with_a_remote_inspector_decides_like_the_local_one(judge_server, classifier_dir):
    crit = get_criterion("ethical")
    local = SequenceClassifierInspector(str(classifier_dir), criterion=crit)
    remote = RemoteClassifierInspector(f"{judge_server.url}/classify", "judge", criterion=crit)
    threshold = sorted(local.score_batch(QUESTIONS, ANSWERS))[2]  # splits the batch
    results = [
        Squad([SquadMember(crit, None, inspector, threshold)]).check_batch(QUESTIONS, ANSWERS)
        for inspector in (local, remote)
    ]
    assert [r.flagged for r in results[0]] == [r.flagged for r in results[1]]
    assert any(r.flagged for r in results[0]) and not all(r.flagged for r in results[0])


def test_server_answer_shape(judge_server) -> None:
    reply = httpx.post(f"{judge_server.url}/classify", json={"model": "judge", "input": "hi"})
    row = reply.json()["data"][0]
    assert row["num_classes"] == 2 and row["label"] in ("aligned", "misaligned")
    assert sum(row["probs"]) == pytest.approx(1.0)
    unknown = httpx.post(f"{judge_server.url}/classify", json={"model": "x", "input": ["hi"]})
    assert unknown.status_code == 404 and "not served" in unknown.json()["error"]["message"]
    empty = httpx.post(f"{judge_server.url}/classify", json={"input": []})
    assert empty.status_code == 400


def test_faults_are_clear_errors(fault_server, tiny_server) -> None:
    down = RemoteClassifierInspector(
        f"http://127.0.0.1:{free_port()}/classify", "judge", max_retries=0, timeout=2.0
    )
    with pytest.raises(GenerationError, match="cannot connect"):
        down.score("q", "a")
    malformed = RemoteClassifierInspector(fault_server("malformed").base_url, "judge")
    with pytest.raises(GenerationError, match="no classification data"):
        malformed.score("q", "a")
    no_classifier = RemoteClassifierInspector(f"{tiny_server.url}/classify", "judge")
    with pytest.raises(GenerationError, match="HTTP 404.*no classifier"):
        no_classifier.score("q", "a")
    with pytest.raises(ValueError, match="aligned_label"):
        RemoteClassifierInspector("http://127.0.0.1:9/classify", "judge", aligned_label=-1)


def test_out_of_range_label_is_reported(judge_server) -> None:
    remote = RemoteClassifierInspector(f"{judge_server.url}/classify", "judge", aligned_label=5)
    with pytest.raises(GenerationError, match="aligned_label=5 is out of range"):
        remote.score("q", "a")
