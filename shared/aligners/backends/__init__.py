"""Generation backends: in-process transformers (default); remote servers plug in the same way."""

from aligners.backends.base import Generation, GenerationBackend, GenerationConfig
from aligners.backends.cache import MODEL_CACHE, ModelCache
from aligners.backends.models import ModelSource, minilm_path, resolve_model, smollm2_path
from aligners.backends.openai import OpenAIBackend as OpenAIBackend
from aligners.backends.transformers import TransformersBackend

__all__ = [
    "MODEL_CACHE",
    "Generation",
    "GenerationBackend",
    "GenerationConfig",
    "ModelCache",
    "ModelSource",
    "TransformersBackend",
    "minilm_path",
    "resolve_model",
    "smollm2_path",
]
