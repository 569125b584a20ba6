"""Configuration of one aligner: which model, which format, how to decode."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONFIG_NAME = "aligner_config.json"


class AlignerConfig(BaseModel):
    """Everything needed to rebuild an aligner; saved as ``aligner_config.json``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="smollm2",
        description="Alias (smollm2), local directory, .gguf file or hub id of a causal LM.",
    )
    format: str = Field(default="chat", description="Format name or template string.")
    criterion: str | None = Field(
        default=None, description="Criterion this aligner corrects for (named in chat prompts)."
    )
    gguf_file: str | None = None
    adapter: str | None = Field(default=None, description="PEFT adapter directory or hub id.")
    device_map: str | dict[str, Any] | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_new_tokens: int = Field(default=256, gt=0)
    batch_size: int = Field(default=8, gt=0)
    # On by default: benchmark 3 (docs/benchmarks.md) measured 1.5-1.9x on real corrections with
    # identical greedy text; heavy rewrites pay ~30%, and batches above one decode normally.
    copy_aware: bool = Field(
        default=True, description="Draft tokens from the answer (prompt-lookup decoding)."
    )
    overflow: Literal["truncate", "error"] = Field(
        default="truncate",
        description="When the answer does not fit the context: cut its middle, or raise.",
    )
    on_token_limit: Literal["keep_previous", "accept"] = Field(
        default="keep_previous",
        description="When a rewrite stops at max_new_tokens before it ends: keep the previous "
        "text and record why (a cut-off correction loses the answer's end), or accept the cut "
        "text, recorded as hit_token_limit.",
    )
    handback_opening: str | None = Field(
        default=None,
        min_length=1,
        description="When this aligner hands back, unchanged, an answer its squad would block, "
        "the squad asks once more with the reply forced to open with this text (a safety "
        'aligner: a refusal opening such as "I can\'t help with that."); None: no retry, the '
        "answer is blocked.",
    )
    max_input_tokens: int | None = Field(
        default=None, gt=0, description="Prompt budget; defaults to the model's context length."
    )

    @field_validator("handback_opening")
    @classmethod
    def _opening_has_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("handback_opening must hold text (or be None for no retry)")
        return value
