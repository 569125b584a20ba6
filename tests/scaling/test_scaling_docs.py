"""docs/scaling.md: its Python blocks run as written, in order, in one namespace (they build on each
other: stand-in server, squad, proxy); shell and LangChain snippets are text and not run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_documents_vllm_and_marks_what_is_not_run() -> None:
    shell = "\n".join(blocks("bash"))
    assert "vllm serve" in shell and "--distributed-executor-backend ray" in shell
    assert "aligners serve --plain" in shell
    python = "\n".join(blocks("python"))
    assert "langchain_openai" not in python  # the LangChain snippet must stay text
    assert any("ChatOpenAI" in b for b in blocks("text"))
    assert len(blocks("python")) >= 3


@pytest.mark.e2e
def test_python_blocks_run_in_order(monkeypatch) -> None:
    monkeypatch.delenv("ALIGNER_API_KEY", raising=False)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for index, code in enumerate(blocks("python")):
            exec(compile(code, f"<docs/scaling.md block {index}>", "exec"), namespace)
    finally:
        for name in ("proxy", "stand_in"):
            server = namespace.get(name)
            if server is not None:
                server.stop()  # type: ignore[attr-defined]
