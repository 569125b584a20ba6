"""LangChain's own standard tests (``langchain-tests``) for ChatAlignersLocal.

Unit and integration suites both run on the tiny random model (fast: the integration tests only
check the shapes LangChain relies on, which a random model produces as well as a real one); the
integration suite runs again on SmolLM2 in the e2e group. The capability flags say the truth:
no tools, no structured output or JSON mode, text only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_aligners import ChatAlignersLocal


class _Capabilities:
    """What ChatAlignersLocal can do, for both suites."""

    model_dir: str = "smollm2"

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_lm_dir: Path) -> None:
        # Autouse fixtures run before the suite's `model` fixture, which reads chat_model_params.
        type(self).model_dir = str(tiny_lm_dir)

    @property
    def chat_model_class(self) -> type[ChatAlignersLocal]:
        return ChatAlignersLocal

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": self.model_dir}  # the standard parameters add max_tokens=100

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # A local model has no API key and nothing to retry; those two standard parameters are
        # rejected as unknown (by design), the rest (temperature, max_tokens, timeout, stop) work.
        params: dict[str, Any] = super().standard_chat_model_params  # type: ignore[misc]
        return {k: v for k, v in params.items() if k not in ("api_key", "max_retries")}

    @property
    def has_tool_calling(self) -> bool:
        return False  # bind_tools is overridden only to raise a helpful error

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatAlignersLocalUnit(_Capabilities, ChatModelUnitTests):
    """``ChatModelUnitTests`` on the tiny random model."""


class TestChatAlignersLocalIntegration(_Capabilities, ChatModelIntegrationTests):
    """``ChatModelIntegrationTests`` on the tiny random model."""


@pytest.mark.e2e
class TestChatAlignersLocalSmolLM2(_Capabilities, ChatModelIntegrationTests):
    """``ChatModelIntegrationTests`` on the real offline SmolLM2-135M-Instruct."""

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_lm_dir: Path) -> None:
        type(self).model_dir = "smollm2"

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": self.model_dir, "max_tokens": 32}  # over the standard 100: faster
