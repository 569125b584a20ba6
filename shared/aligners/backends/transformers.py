"""The default in-process backend: any Hugging Face causal LM through transformers."""

from __future__ import annotations

import functools
import logging
import os
import queue
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligners.backends.base import Generation, GenerationBackend, GenerationConfig
from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.backends.copy_decoding import (
    CopyDecoder,
    CopyDecodingOptions,
    supports_copy_decoding,
)
from aligners.backends.models import ModelSource, converted_cache_dir, resolve_model
from aligners.errors import ModelNotFoundError
from aligners.formats.base import Prompt

logger = logging.getLogger(__name__)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def gguf_progress_bar() -> Iterator[None]:
    """Hide transformers' "Converting and de-quantizing GGUF tensors" bar where transformers'
    progress bars are off (the CLI unless ``--verbose``): that bar is a plain ``tqdm`` that
    ignores transformers' own switch."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    if hf_logging.is_progress_bar_enabled():
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


@dataclass
class LoadedModel:
    """A model and its tokenizer, as the cache holds them."""

    model: Any
    tokenizer: Any
    lock: threading.Lock


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        return "auto"
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise ValueError(
            f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}"
        ) from None


def _default_device_map() -> str | None:
    import torch

    return "auto" if torch.cuda.is_available() else None


def load_causal_lm(
    source: ModelSource,
    *,
    adapter: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    dtype: str = "auto",
    special_tokens: tuple[str, ...] = (),
    merge_adapter: bool = True,
) -> LoadedModel:
    """Load a causal LM (safetensors or GGUF, optional PEFT adapter) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if device_map is None:
        device_map = _default_device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    converted = converted_cache_dir(source)
    try:
        if converted is not None and (converted / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(converted)
            model = AutoModelForCausalLM.from_pretrained(converted, **kwargs)
        else:
            gguf = {"gguf_file": source.gguf_file} if source.gguf_file else {}
            with gguf_progress_bar() if source.gguf_file else _nothing():
                tokenizer = AutoTokenizer.from_pretrained(source.path, **gguf)
                model = AutoModelForCausalLM.from_pretrained(source.path, **gguf, **kwargs)
            if converted is not None:
                _save_converted(model, tokenizer, converted)
    except OSError as exc:
        raise ModelNotFoundError(
            f"could not load model {source.path!r}"
            + (f" (gguf file {source.gguf_file!r})" if source.gguf_file else "")
            + f": {exc}".splitlines()[0]
        ) from exc
    if adapter is not None:
        model, tokenizer = _apply_adapter(model, tokenizer, adapter, merge_adapter)
    missing = [t for t in special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        logger.warning(
            "adding marker tokens %s to the vocabulary of %s: this model was not trained with "
            "them, so its corrections will be poor until it is fine-tuned in this format",
            missing,
            source.path,
        )
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, lock=threading.Lock())


def _save_converted(model: Any, tokenizer: Any, directory: Path) -> None:
    import copy

    from safetensors.torch import save_model

    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # save_pretrained refuses GGUF-quantized models; the weights are already dequantized,
        # so write them as plain safetensors with a config that no longer claims quantization.
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tmp.rename(directory)
    except (OSError, ValueError) as exc:  # a read-only home must not break loading
        logger.info("could not cache converted GGUF model at %s: %s", directory, exc)
        shutil.rmtree(tmp, ignore_errors=True)


def _apply_adapter(model: Any, tokenizer: Any, adapter: str, merge: bool) -> tuple[Any, Any]:
    from peft import PeftModel
    from transformers import AutoTokenizer

    adapter_dir = Path(adapter).expanduser()
    if adapter_dir.is_dir() and (adapter_dir / "tokenizer_config.json").exists():
        # The adapter was trained with extra tokens: take its tokenizer and grow the embeddings.
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
    try:
        peft_model = PeftModel.from_pretrained(
            model, str(adapter_dir) if adapter_dir.exists() else adapter
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"could not load PEFT adapter {adapter!r}: {exc}") from exc
    except Exception as exc:  # e.g. safetensors' SafetensorError for a damaged weights file
        weights = sorted(str(p) for p in adapter_dir.glob("adapter_model.*"))
        where = weights[0] if len(weights) == 1 else str(adapter_dir)
        raise ModelNotFoundError(
            f"could not read PEFT adapter weights {where!r} ({type(exc).__name__}: {exc}); the "
            "file is damaged or incomplete: copy or train the adapter again"
        ) from exc
    return (peft_model.merge_and_unload() if merge else peft_model), tokenizer


class TransformersBackend(GenerationBackend):
    """Generates in this process with transformers; weights load lazily on first use and are
    shared through the process-wide :data:`~aligners.backends.cache.MODEL_CACHE`.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        adapter: str | None = None,
        device_map: str | dict[str, Any] | None = None,
        dtype: str = "auto",
        special_tokens: Sequence[str] = (),
        cache: ModelCache = MODEL_CACHE,
    ) -> None:
        self.source = resolve_model(model, gguf_file)
        self.adapter = adapter
        self.device_map = device_map
        self.dtype = dtype
        self.special_tokens = tuple(special_tokens)
        self._cache = cache
        self._copy_supported: bool | None = None

    @property
    def cache_key(self) -> tuple[Any, ...]:
        device = repr(self.device_map)
        return ("causal-lm", self.source, self.adapter, device, self.dtype, self.special_tokens)

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are already in memory (construction never loads them)."""
        return self.cache_key in self._cache

    def load(self) -> LoadedModel:
        """Load (once per process) and return the model and tokenizer."""
        loaded: LoadedModel = self._cache.get_or_load(
            self.cache_key,
            lambda: load_causal_lm(
                self.source,
                adapter=self.adapter,
                device_map=self.device_map,
                dtype=self.dtype,
                special_tokens=self.special_tokens,
            ),
        )
        return loaded

    def ensure_special_tokens(self, tokens: Sequence[str]) -> None:
        new = tuple(t for t in tokens if t not in self.special_tokens)
        if new:
            self.special_tokens = self.special_tokens + new

    @property
    def context_length(self) -> int | None:
        config = self.load().model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- prompts -------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model: raw prompts as is, chat messages via the template
        (a trailing assistant message is continued, not answered)."""
        if isinstance(prompt, str):
            return prompt
        tokenizer = self.load().tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"model {self.source.path!r} has no chat template; use a raw format such as 'ibm' "
                "or 'pku', or a template string"
            )
        # A trailing assistant message is a reply to continue (the transformers pipeline's
        # convention): no new turn opens after it.
        continues = bool(prompt) and prompt[-1].get("role") == "assistant"
        text: str = tokenizer.apply_chat_template(
            prompt,
            add_generation_prompt=not continues,
            continue_final_message=continues,
            tokenize=False,
        )
        return text

    def _encode(self, prompt: Prompt) -> list[int]:
        tokenizer = self.load().tokenizer
        # Chat templates already contain the special tokens; raw prompts get the model's BOS.
        ids: list[int] = tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))[
            "input_ids"
        ]
        return ids

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self._encode(prompt))

    def truncate_middle(self, text: str, max_tokens: int) -> str:
        tokenizer = self.load().tokenizer
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        keep = max(max_tokens - 3, 2)  # room for the " ... " marker
        head = keep // 2
        return (
            tokenizer.decode(ids[:head]).rstrip()
            + " ... "
            + tokenizer.decode(ids[len(ids) - (keep - head) :]).lstrip()
        )

    # -- generation ----------------------------------------------------------------------------

    def _stops(self, config: GenerationConfig) -> tuple[list[int], list[str]]:
        """End-of-sequence token ids, and stop strings that are not single marker tokens."""
        loaded = self.load()
        tokenizer = loaded.tokenizer
        vocab = tokenizer.get_vocab()
        eos = loaded.model.generation_config.eos_token_id
        eos_ids = (
            list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        )
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
        text_stops = []
        for stop in config.stop_strings:
            if stop in vocab and stop in tokenizer.all_special_tokens:
                eos_ids.append(vocab[stop])  # a marker token: stopping on its id is exact and free
            else:
                text_stops.append(stop)
        return eos_ids, text_stops

    def _generate_kwargs(self, config: GenerationConfig, batch: int) -> dict[str, Any]:
        tokenizer = self.load().tokenizer
        eos_ids, text_stops = self._stops(config)
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "eos_token_id": eos_ids,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if text_stops:
            kwargs.update(stop_strings=text_stops, tokenizer=tokenizer)
        if config.max_time is not None:
            kwargs["max_time"] = config.max_time
        # transformers' prompt lookup: only where our copy-aware decoder does not apply.
        if config.copy_aware and batch == 1 and config.temperature == 0:
            kwargs["prompt_lookup_num_tokens"] = config.prompt_lookup_num_tokens
        return kwargs

    def _use_copy_decoding(self, config: GenerationConfig, count: int) -> bool:
        if not config.copy_aware or config.temperature > 0 or config.max_time is not None:
            return False  # sampling and time limits keep transformers' own path
        if config.sources is not None and len(config.sources) != count:
            raise ValueError(
                f"GenerationConfig.sources has {len(config.sources)} entries for {count} prompts"
            )
        model = self.load().model
        if self._copy_supported is None:
            self._copy_supported = supports_copy_decoding(model) and _plain_greedy(model)
        return self._copy_supported

    def _copy_decoder(self, config: GenerationConfig, *, streaming: bool) -> CopyDecoder:
        loaded = self.load()
        tokenizer = loaded.tokenizer
        eos_ids, text_stops = self._stops(config)
        stop = None
        if text_stops:
            from transformers import StopStringCriteria

            stop = StopStringCriteria(tokenizer, text_stops)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        options = CopyDecodingOptions(
            initial_draft=config.prompt_lookup_num_tokens,
            # Streaming: the prompt pass alone, so the first token comes as early as without drafts.
            draft_in_prefill=not streaming,
        )
        return CopyDecoder(
            loaded.model,
            max_new_tokens=config.max_new_tokens,
            eos_token_ids=eos_ids,
            pad_token_id=pad,
            stop=stop,
            options=options,
        )

    def _source_ids(self, source: str | None) -> list[int] | None:
        if source is None:
            return None
        ids: list[int] = self.load().tokenizer(source, add_special_tokens=False)["input_ids"]
        return ids

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        return [g.text for g in self.generate_detailed(prompts, config)]

    def generate_detailed(
        self, prompts: Sequence[Prompt], config: GenerationConfig
    ) -> list[Generation]:
        import torch

        if not prompts:
            return []
        loaded = self.load()
        model, tokenizer = loaded.model, loaded.tokenizer
        encoded = [self._encode(p) for p in prompts]
        copy = self._use_copy_decoding(config, len(prompts))
        sources = config.sources or (None,) * len(prompts)
        # Length-sorted buckets keep padding (wasted compute) small inside each batch.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs: list[Generation] = [Generation("")] * len(encoded)
        eos_ids, text_stops = self._stops(config)

        def finished(row: Any) -> Generation:
            tokens = [int(t) for t in row]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            # Generation ends at an end-of-sequence id, a stop string or max_new_tokens; a row
            # with neither of the first two ran out of tokens mid-text.
            stopped = any(t in eos_ids for t in tokens) or any(s in text for s in text_stops)
            return Generation(text, "stop" if stopped else "length")

        for start in range(0, len(order), config.batch_size):
            bucket = order[start : start + config.batch_size]
            if copy:
                decoder = self._copy_decoder(config, streaming=False)
                source_ids = [self._source_ids(sources[i]) for i in bucket]
                with loaded.lock:
                    rows = decoder.generate([encoded[i] for i in bucket], source_ids)
                for row, index in zip(rows, bucket):
                    outputs[index] = finished(row)
                continue
            batch = tokenizer.pad(
                {"input_ids": [encoded[i] for i in bucket]}, padding=True, return_tensors="pt"
            ).to(model.device)
            kwargs = self._generate_kwargs(config, len(bucket))
            with loaded.lock, torch.inference_mode():
                generated = model.generate(**batch, **kwargs)
            new_tokens = generated[:, batch["input_ids"].shape[1] :]
            for row, index in zip(new_tokens, bucket):
                outputs[index] = finished(row)
        return outputs

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        if self._use_copy_decoding(config, 1):
            yield from self._stream_copy(prompt, config)
            return
        import torch
        from transformers import TextIteratorStreamer

        loaded = self.load()
        model, tokenizer = loaded.model, loaded.tokenizer
        batch = tokenizer.pad({"input_ids": [self._encode(prompt)]}, return_tensors="pt").to(
            model.device
        )
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(config, 1)
        kwargs.pop("prompt_lookup_num_tokens", None)  # assisted decoding does not stream
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with loaded.lock, torch.inference_mode():
                    model.generate(**batch, **kwargs, streamer=streamer)
            except BaseException as exc:
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()
        if errors:
            raise errors[0]

    def _stream_copy(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Stream copy-aware decoding: every verified span is sent as soon as it is accepted."""
        loaded = self.load()
        tokenizer = loaded.tokenizer
        encoded = self._encode(prompt)
        source = self._source_ids(config.sources[0] if config.sources else None)
        decoder = self._copy_decoder(config, streaming=True)
        spans: queue.Queue[list[int] | BaseException | None] = queue.Queue()

        def run() -> None:
            try:
                with loaded.lock:
                    for step in decoder.spans([encoded], [source]):
                        spans.put(step[0][1])
            except BaseException as exc:  # re-raised in the consumer
                spans.put(exc)
            else:
                spans.put(None)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        tokens: list[int] = []
        sent = ""
        while True:
            item = spans.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                break
            tokens.extend(item)
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            # Hold back a half-decoded character, and anything that would rewrite sent text.
            if text.endswith("\ufffd") or not text.startswith(sent) or len(text) == len(sent):
                continue
            yield text[len(sent) :]
            sent = text
        thread.join()
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        if text.startswith(sent) and len(text) > len(sent):
            yield text[len(sent) :]


def _plain_greedy(model: Any) -> bool:
    """Whether the model's own generation settings leave greedy decoding plain (no penalties,
    forced or suppressed tokens), so the copy-aware decoder reproduces ``generate`` exactly."""
    from transformers import GenerationConfig as HFGenerationConfig

    defaults = HFGenerationConfig()
    settings = getattr(model, "generation_config", None)
    if settings is None:
        return True
    names = (
        "repetition_penalty",
        "encoder_repetition_penalty",
        "no_repeat_ngram_size",
        "bad_words_ids",
        "min_length",
        "min_new_tokens",
        "suppress_tokens",
        "begin_suppress_tokens",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "sequence_bias",
        "exponential_decay_length_penalty",
        "renormalize_logits",
    )
    return all(getattr(settings, n, None) == getattr(defaults, n, None) for n in names)
