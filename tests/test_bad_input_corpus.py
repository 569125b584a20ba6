"""A table-driven corpus of bad inputs on the five user surfaces, and what each one must give.

One table per surface: ENGINE_CASES (the Python API), LANGCHAIN_CASES, LLAMAINDEX_CASES,
CLI_CASES (``aligners ...`` run in-process through ``run_cli``) and SERVER_CASES (the proxy and
the plain model server, driven over ASGI with a TestClient). A case is an id, what a user does,
and the outcome: ``Raises`` (an error whose message names the field, item, line or option),
``Rejected`` / ``Exits`` (the HTTP and CLI forms of that), or a check of graceful handling
(``Kept``, ``Answered``, ...: the answer comes back as it was, with the reason in its record).

Everything is fast: squads of ``FunctionInspector`` rules and ``ConstantBackend`` aligners, real
langchain-core / llama-index-core objects, no model weights. A case given ``bug=`` is a known
defect: it fails today (a strict xfail) and its reason says where the fix belongs (none today:
the 16 found when the corpus was written are fixed, each still covered by its case).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    FunctionMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableLambda
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.base.response.schema import PydanticResponse, Response, StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.chat_engine.types import AgentChatResponse
from llama_index.core.llms import MockLLM
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import BaseModel, ValidationError

import aligners.cli.align as cli_align
import aligners.server
import aligners.squad.defaults as squad_defaults
from aligners import (
    Aligner,
    AlignmentResult,
    FunctionInspector,
    FunctionRequestInspector,
    Inspector,
    ModelNotFoundError,
    Squad,
    SquadMember,
    SquadPolicy,
    TemplateFormat,
    UnknownCriterionError,
    UnknownFormatError,
    get_criterion,
    register_criterion,
)
from aligners.backends.base import Generation, GenerationBackend, GenerationConfig
from aligners.cli.errors import run_cli
from aligners.cli.main import app as cli_app
from aligners.errors import AlignmentViolation, GenerationError
from aligners.server import (
    ModelServerSettings,
    ProxySettings,
    Upstream,
    create_app,
    create_model_app,
)
from aligners.squad.squad import DEFAULT_BLOCKED_MESSAGE, SquadStream
from langchain_aligners import AlignerSquad, AlignerSquadMiddleware, ChatAlignersLocal
from llamaindex_aligners import (
    AlignedChatEngine,
    AlignedQueryEngine,
    AlignerPostprocessor,
    AlignersLLM,
    AlignmentSettings,
)
from tests.engine.conftest import BrokenBackend, ConstantBackend

METADATA_KEY = "aligners"  # where every surface puts the squad's record

HARMFUL = "Here is how to harm them."  # the rule inspector flags it (0.1)
FINE = "Talk to them calmly."  # passes (0.9)
FIXED = "I would rather help you talk it through."  # what the aligner writes; passes
SURROGATE = "bad \udcff byte"  # bytes decoded with surrogateescape
QUESTION = "How do I deal with a noisy neighbour?"


def flags_harm(question: str, answer: str) -> float:
    """A rule inspector with known scores: anything about harming is misaligned."""
    return 0.1 if "harm" in answer.lower() else 0.9


def inspector_down(question: str, answer: str) -> float:
    raise RuntimeError("inspector service down")


def inspector_unreachable(question: str, answer: str) -> float:
    raise ConnectionError("inspector server unreachable")


# -- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """The call fails with ``error``, its message matching ``match``: it names the problem."""

    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


def text_and_record(value: Any) -> tuple[Any, dict[str, Any]]:
    """The text a surface handed back and the squad record beside it."""
    if isinstance(value, AlignmentResult):
        return value.text, value.to_record()
    if isinstance(value, tuple):
        return value
    if isinstance(value, BaseMessage):
        return value.content, value.response_metadata[METADATA_KEY]
    if isinstance(value, NodeWithScore):
        text = value.node.get_content(metadata_mode=MetadataMode.NONE)
        return text, value.node.metadata[METADATA_KEY]
    if isinstance(value, (Response, AgentChatResponse, PydanticResponse)):
        assert value.metadata is not None
        return value.response, value.metadata[METADATA_KEY]
    if isinstance(value, dict):
        return value["text"], value
    raise TypeError(f"no record in a {type(value).__name__}")


@dataclass(frozen=True)
class Kept:
    """Graceful handling: the answer comes back as ``text``, the record says ``action`` and why
    (``reason``, a regex over its failures and skipped_reason). For a batch, ``at`` picks the
    item and ``others`` gives the actions of the rest (they were still aligned)."""

    text: Any
    reason: str
    action: str = "failed"
    at: int = 0
    others: tuple[tuple[int, str], ...] = ()

    def __call__(self, value: Any) -> None:
        items = value if isinstance(value, list) else [value]
        text, record = text_and_record(items[self.at])
        assert text == self.text, (text, record)
        assert record["action"] == self.action, record
        why = " ".join(record.get("failures") or []) + " " + (record.get("skipped_reason") or "")
        assert re.search(self.reason, why), why
        for index, action in self.others:
            assert text_and_record(items[index])[1]["action"] == action


@dataclass(frozen=True)
class Equals:
    """The call returns exactly ``value`` (e.g. a batch with its bad item handed back)."""

    value: Any

    def __call__(self, value: Any) -> None:
        assert value == self.value


Outcome = Raises | Callable[[Any], None]


def verify(action: Callable[[], Any], outcome: Outcome) -> None:
    if isinstance(outcome, Raises):
        with pytest.raises(outcome.error, match=outcome.match):
            action()
    else:
        outcome(action())


def case(
    id: str,
    action: Any,
    outcome: Any,
    *,
    bug: str | None = None,
    fails_with: type[BaseException] | None = None,
) -> Any:
    """One row of a table. ``bug``: a known defect (strict xfail, failing with ``fails_with``)."""
    marks = []
    if bug is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=bug, raises=fails_with))
    return pytest.param(action, outcome, id=id, marks=marks)


def run(awaitable: Any) -> Any:
    return asyncio.run(awaitable)


def untyped(value: Any) -> Any:
    """``value`` as a type checker sees any user input: a bad input is the point of the case."""
    return value


#: A misspelt option (``thresold``), which must not be ignored.
MISSPELT: dict[str, Any] = {"thresold": 0.2}


# == 1. the Python engine API ====================================================================


class CutBackend(ConstantBackend):
    """Every generation stops at max_new_tokens before it ends (finish reason ``length``)."""

    def generate_detailed(
        self, prompts: Sequence[Any], config: GenerationConfig
    ) -> list[Generation]:
        self.calls.append(len(prompts))
        return [Generation(self.text, "length") for _ in prompts]


class OneScoreInspector(Inspector):
    """A broken inspector: one score whatever the batch size."""

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [0.5]


class NoScoresInspector(Inspector):
    """A broken inspector: returns None instead of a list."""

    def _score(self, questions: Sequence[str], answers: Sequence[str]) -> Any:
        return None


def squad(
    backend: GenerationBackend | None = None,
    score: Callable[[str, str], Any] = flags_harm,
    **options: Any,
) -> Squad:
    """One ethical member: ``score`` gates it, its aligner writes FIXED (or what ``backend``
    does)."""
    aligner = Aligner(
        "unused", format="chat", backend=backend or ConstantBackend(FIXED), max_new_tokens=7
    )
    member = SquadMember(get_criterion("ethical"), aligner, FunctionInspector(score, "ethical"))
    return Squad([member], **options)


def inspect_only(inspector: Inspector, **options: Any) -> Squad:
    return Squad([SquadMember(get_criterion("ethical"), None, inspector)], **options)


def aligner(**config: Any) -> Aligner:
    return Aligner("unused", backend=ConstantBackend(FIXED), **config)


def streamed(stream: SquadStream) -> AlignmentResult:
    """Consume a squad stream; what was shown must be what its record says."""
    text = "".join(stream)
    assert stream.result is not None
    assert text == stream.result.text
    return stream.result


def some_questions() -> Iterator[str]:
    yield "q"


ZERO_WIDTH = "\u200b\u200d\ufeff"  # zero-width space, joiner, byte-order mark: shows nothing


def without_shipped_inspectors(criteria: list[str] | None = None) -> Squad:
    """``Squad.default`` on an install whose shipped inspector folders are missing."""
    gone = Path("/nonexistent/aligners-default-models/inspectors")
    with (
        mock.patch.object(squad_defaults, "SAFETY_GATE_DIR", gone / "safety-gate"),
        mock.patch.object(squad_defaults, "DEFAULT_INSPECTORS_DIR", gone),
    ):
        return Squad.default(criteria)


def zero_shot_member(built: Squad) -> None:
    """A criterion outside DEFAULT_CRITERIA keeps its zero-shot fallback (documented)."""
    (member,) = built.members
    assert member.name == "helpful" and type(member.inspector).__name__ == "EncoderHeadInspector"


def engine_member(threshold: Any) -> SquadMember:
    return SquadMember(get_criterion("ethical"), None, FunctionInspector(flags_harm), threshold)


RETURN: dict[str, Any] = {"on_error": "return_original"}


ENGINE_CASES = [
    # -- one pair: answers and questions that nothing can align
    case(
        "align-empty-answer",
        lambda: squad().align("q", ""),
        Raises(ValueError, r"answers\[0\]: answer is empty"),
    ),
    case(
        "align-tab-newline-answer",
        lambda: squad().align("q", "\t\n "),
        Raises(ValueError, r"answers\[0\]: answer is empty"),
    ),
    case(
        "align-zero-width-answer",
        lambda: squad().align("q", ZERO_WIDTH),
        Raises(
            ValueError,
            r"answers\[0\]: answer is empty: it holds only invisible characters "
            r"\(U\+200B, U\+200D, U\+FEFF\)",
        ),
    ),
    case(
        "align-zero-width-and-spaces-answer",
        lambda: squad(on_error="return_original").align("q", " \u2060\n\u00ad "),
        Kept(" \u2060\n\u00ad ", "answer is empty: it holds only invisible characters"),
    ),
    case(
        "align-none-answer",
        lambda: squad().align("q", None),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got NoneType"),
    ),
    case(
        "align-int-answer",
        lambda: squad().align("q", 42),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got int"),
    ),
    case(
        "align-bytes-answer",
        lambda: squad().align("q", b"an answer"),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got bytes"),
    ),
    case(
        "align-list-answer",
        lambda: squad().align("q", ["an", "answer"]),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got list"),
    ),
    case(
        "align-dict-answer",
        lambda: squad().align("q", {"text": "x"}),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got dict"),
    ),
    case(
        "align-float-answer",
        lambda: squad().align("q", 3.5),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got float"),
    ),
    case(
        "align-none-question",
        lambda: squad().align(None, FINE),
        Raises(TypeError, r"questions\[0\]: question must be a str, got NoneType"),
    ),
    case(
        "align-bytes-question",
        lambda: squad().align(b"q", FINE),
        Raises(TypeError, r"questions\[0\]: question must be a str, got bytes"),
    ),
    case(
        "align-surrogate-question",
        lambda: squad().align("q \udcff", FINE),
        Raises(
            ValueError,
            r"questions\[0\]: question is not valid Unicode text: "
            r"a lone surrogate '\\udcff' at position 2",
        ),
    ),
    case(
        "align-high-surrogate-answer",
        lambda: squad().align("q", "ok \ud800 x"),
        Raises(
            ValueError,
            r"answers\[0\]: answer is not valid Unicode text: "
            r"a lone surrogate '\\ud800' at position 3",
        ),
    ),
    # -- batches
    case(
        "batch-third-answer-none",
        lambda: squad().align_batch(["q"] * 3, ["a", "b", None]),
        Raises(TypeError, r"answers\[2\]: answer must be a str, got NoneType"),
    ),
    case(
        "batch-second-question-list",
        lambda: squad().align_batch(["q", ["q"]], ["a", "b"]),
        Raises(TypeError, r"questions\[1\]: question must be a str, got list"),
    ),
    case(
        "batch-no-answers",
        lambda: squad().align_batch(["q"], []),
        Raises(ValueError, r"differ in length \(1 vs 0\)"),
    ),
    case(
        "batch-more-answers",
        lambda: squad().align_batch(["q", "q"], ["a", "b", "c"]),
        Raises(ValueError, r"differ in length \(2 vs 3\)"),
    ),
    case(
        "batch-questions-a-single-str",
        lambda: squad().align_batch("q", ["a"]),
        Raises(TypeError, "not a single str"),
    ),
    case(
        "batch-answers-a-bytes-object",
        lambda: squad().align_batch(["q"], b"a"),
        Raises(TypeError, "not a single bytes object"),
    ),
    case(
        "batch-none-containers",
        lambda: squad().align_batch(None, None),
        Raises(TypeError, "questions must be a sequence of str .*got NoneType"),
    ),
    case(
        "batch-generator-questions",
        lambda: squad().align_batch(some_questions(), ["a"]),
        Raises(TypeError, "questions must be a sequence of str .*got generator"),
    ),
    case(
        "batch-int-answers",
        lambda: squad().align_batch(["q"], 3),
        Raises(TypeError, "answers must be a sequence of str .*got int"),
    ),
    case(
        "check-blank-answer",
        lambda: squad().check("q", "  "),
        Raises(ValueError, r"answers\[0\]: answer is empty"),
    ),
    case(
        "check-batch-mismatch",
        lambda: squad().check_batch(["q"], []),
        Raises(ValueError, "differ in length"),
    ),
    case(
        "aalign-none-answer",
        lambda: run(squad().aalign("q", None)),
        Raises(TypeError, r"answers\[0\]: answer must be a str, got NoneType"),
    ),
    case(
        "aalign-batch-mismatch",
        lambda: run(squad().aalign_batch(["q", "q"], ["a"])),
        Raises(ValueError, r"differ in length \(2 vs 1\)"),
    ),
    case(
        "stream-empty-answer",
        lambda: squad().stream("q", ""),
        Raises(ValueError, "answer is empty"),
    ),
    case(
        "stream-int-question",
        lambda: squad().stream(5, FINE),
        Raises(TypeError, "question must be a str, got int"),
    ),
    case(
        "score-mismatch",
        lambda: squad().score(["q"], ["a", "b"]),
        Raises(ValueError, r"differ in length \(1 vs 2\)"),
    ),
    # -- squads and members
    case("squad-no-members", lambda: Squad([]), Raises(ValueError, "at least one member")),
    case(
        "squad-duplicate-members",
        lambda: Squad([engine_member(0.5), engine_member(0.5)]),
        Raises(ValueError, r"distinct criteria, got \['ethical', 'ethical'\]"),
    ),
    case(
        "squad-criterion-names-instead-of-members",
        lambda: Squad(["ethical"]),
        Raises(TypeError, "SquadMember"),
    ),
    case(
        "squad-unknown-ordering",
        lambda: squad(ordering="random"),
        Raises(ValidationError, "ordering"),
    ),
    case("squad-zero-rounds", lambda: squad(max_rounds=0), Raises(ValidationError, "max_rounds")),
    case(
        "squad-unknown-on-flag",
        lambda: squad(on_flag="explode"),
        Raises(ValidationError, "on_flag"),
    ),
    case(
        "squad-unknown-on-error",
        lambda: squad(on_error="ignore"),
        Raises(ValidationError, "on_error"),
    ),
    case(
        "squad-blank-blocked-message",
        lambda: squad(blocked_message="  "),
        Raises(ValidationError, "blocked_message must have text"),
    ),
    case(
        "member-threshold-above-one",
        lambda: engine_member(1.5),
        Raises(ValueError, r"threshold of 'ethical' must be in \[0, 1\], got 1.5"),
    ),
    case(
        "member-threshold-negative",
        lambda: engine_member(-0.1),
        Raises(ValueError, r"threshold of 'ethical' must be in \[0, 1\], got -0.1"),
    ),
    case(
        "member-threshold-nan",
        lambda: engine_member(math.nan),
        Raises(ValueError, r"threshold of '\w+' must be in \[0, 1\], got nan"),
    ),
    case(
        "member-without-aligner-or-inspector",
        lambda: SquadMember(get_criterion("ethical")),
        Raises(ValueError, "needs an aligner or an inspector"),
    ),
    case(
        "with-options-threshold-two",
        lambda: squad().with_options(threshold=2.0),
        Raises(ValueError, r"threshold\s+Value error, threshold must be in \[0, 1\], got 2.0"),
    ),
    case(
        "with-options-threshold-string",
        lambda: squad().with_options(threshold="0.7"),
        Raises((TypeError, ValueError), "threshold"),
    ),
    case(
        "with-options-unknown-option",
        lambda: squad().with_options(bogus=1),
        Raises(TypeError, "unexpected keyword argument 'bogus'"),
    ),
    case(
        "select-unknown-criterion",
        lambda: squad().select(["ethicks"]),
        Raises(ValueError, r"criteria \['ethicks'\] are not in this squad"),
    ),
    case(
        "default-unknown-criterion",
        lambda: Squad.default(["ethicks"]),
        Raises(UnknownCriterionError, "unknown criterion 'ethicks'; known: (.*, )?ethical"),
    ),
    case(
        "default-threshold-nan",
        lambda: Squad.default(["ethical"], threshold=math.nan),
        Raises(ValueError, r"threshold must be in \[0, 1\], got nan"),
    ),
    case(
        "default-on-error-keep",
        lambda: Squad.default(on_error="keep"),
        Raises(ValidationError, r"on_error\s+Input should be 'raise' or 'return_original'"),
    ),
    case(
        "default-zero-max-new-tokens",
        lambda: Squad.default(aligner_options={"max_new_tokens": 0}),
        Raises(ValidationError, r"max_new_tokens\s+Input should be greater than 0"),
    ),
    case(
        "default-unknown-aligner-option",
        lambda: Squad.default(aligner_options={"max_tokens": 5}),
        Raises(ValidationError, r"max_tokens\s+Extra inputs are not permitted"),
    ),
    case(
        "default-none-criterion",
        lambda: Squad.default(untyped([None])),
        Raises(TypeError, r"criteria\[0\] must be a criterion name \(a str .*got NoneType None"),
    ),
    case(
        "default-int-criterion",
        lambda: Squad.default(untyped(["ethical", 3])),
        Raises(TypeError, r"criteria\[1\] must be a criterion name .*got int 3"),
    ),
    case(
        "default-shipped-inspector-folder-missing",
        lambda: without_shipped_inspectors(),
        Raises(
            ModelNotFoundError,
            r"the shipped inspector for 'ethical' is missing: neither .*safety-gate nor "
            r"/nonexistent/aligners-default-models/inspectors/ethical exists",
        ),
    ),
    case(
        "default-non-default-criterion-without-its-folder",
        lambda: without_shipped_inspectors(["helpful"]),
        zero_shot_member,
    ),
    case(
        "request-inspector-none",
        lambda: FunctionRequestInspector(untyped(None)),
        Raises(TypeError, "FunctionRequestInspector needs a callable request -> P.*got NoneType"),
    ),
    case(
        "request-inspector-threshold-two",
        lambda: FunctionRequestInspector(lambda r: 0.5, threshold=2),
        Raises(ValueError, r"FunctionRequestInspector threshold must be in \[0, 1\], got 2"),
    ),
    case(
        "request-inspector-threshold-nan",
        lambda: FunctionRequestInspector(lambda r: 0.5, threshold=math.nan),
        Raises(ValueError, r"threshold must be in \[0, 1\], got nan"),
    ),
    case(
        "request-inspector-threshold-bool",
        lambda: FunctionRequestInspector(lambda r: 0.5, threshold=untyped(True)),
        Raises(TypeError, "threshold must be a number in .* got bool True"),
    ),
    case(
        "default-unknown-format",
        lambda: Squad.default(aligner_options={"format": "nope"}),
        Raises(UnknownFormatError, "unknown format 'nope'"),
    ),
    # -- criteria, aligners, formats
    case(
        "criterion-unknown-name",
        lambda: get_criterion("ethicks"),
        Raises(UnknownCriterionError, "unknown criterion 'ethicks'"),
    ),
    case(
        "criterion-none",
        lambda: get_criterion(None),
        Raises(TypeError, "criterion must be a str or Criterion, got NoneType"),
    ),
    case(
        "register-criterion-bad-name",
        lambda: register_criterion("bad name!", "d"),
        Raises(ValidationError, r"name\s+String should match pattern"),
    ),
    case(
        "register-criterion-empty-description",
        lambda: register_criterion("terse", ""),
        Raises(ValidationError, r"description\s+String should have at least 1 character"),
    ),
    case(
        "aligner-unknown-criterion",
        lambda: aligner(criterion="nope"),
        Raises(UnknownCriterionError, "unknown criterion 'nope'"),
    ),
    case(
        "aligner-unknown-format",
        lambda: aligner(format="nope"),
        Raises(UnknownFormatError, "unknown format 'nope'; known: chat"),
    ),
    case(
        "aligner-format-int",
        lambda: aligner(format=42),
        Raises(TypeError, "format must be a name, a template string or a PromptFormat, got int"),
    ),
    case(
        "aligner-zero-max-new-tokens",
        lambda: aligner(max_new_tokens=0),
        Raises(ValidationError, r"max_new_tokens\s+Input should be greater than 0"),
    ),
    case(
        "aligner-negative-max-new-tokens",
        lambda: aligner(max_new_tokens=-5),
        Raises(ValidationError, r"max_new_tokens\s+Input should be greater than 0"),
    ),
    case(
        "aligner-fractional-max-new-tokens",
        lambda: aligner(max_new_tokens=2.5),
        Raises(ValidationError, r"max_new_tokens\s+Input should be a valid integer"),
    ),
    case(
        "aligner-zero-batch-size",
        lambda: aligner(batch_size=0),
        Raises(ValidationError, "batch_size"),
    ),
    case(
        "aligner-unknown-overflow",
        lambda: aligner(overflow="drop"),
        Raises(ValidationError, r"overflow\s+Input should be 'truncate' or 'error'"),
    ),
    case(
        "aligner-unknown-on-token-limit",
        lambda: aligner(on_token_limit="ignore"),
        Raises(ValidationError, "on_token_limit"),
    ),
    case("aligner-unknown-dtype", lambda: aligner(dtype="int4"), Raises(ValidationError, "dtype")),
    case(
        "aligner-unknown-option",
        lambda: aligner(temperature=0.5),
        Raises(ValidationError, r"temperature\s+Extra inputs are not permitted"),
    ),
    case(
        "aligner-zero-max-input-tokens",
        lambda: aligner(max_input_tokens=0),
        Raises(ValidationError, "max_input_tokens"),
    ),
    case(
        "aligner-model-none",
        lambda: Aligner(None, backend=ConstantBackend(FIXED)),
        Raises(ValidationError, r"model\s+Input should be a valid string"),
    ),
    case(
        "aligner-missing-model-path",
        lambda: Aligner("/no/such/aligner", format="chat").backend.load(),
        Raises(ModelNotFoundError, "model path '/no/such/aligner' does not exist"),
    ),
    case(
        "aligner-directory-without-model",
        lambda: Aligner(str(Path(__file__).parent)).backend.load(),
        Raises(ModelNotFoundError, "has no config.json and no single .gguf file"),
    ),
    case(
        "aligner-align-empty-answer",
        lambda: aligner().align("q", ""),
        Raises(ValueError, r"answers\[0\]: answer is empty"),
    ),
    case(
        "aligner-stream-none-answer",
        lambda: list(aligner().stream("q", None)),
        Raises(TypeError, "answer must be a str, got NoneType"),
    ),
    case(
        "template-without-fields",
        lambda: TemplateFormat("Fix this."),
        Raises(ValueError, r"must contain \{question\} and \{answer\}"),
    ),
    case(
        "template-unknown-field",
        lambda: TemplateFormat("{question} {answer} {bogus}"),
        Raises(ValueError, r"unknown fields \['bogus'\]"),
    ),
    case(
        "template-unclosed-brace",
        lambda: TemplateFormat("{question} {answer"),
        Raises(ValueError, "format template"),
    ),
    # -- inspectors
    case(
        "function-inspector-not-callable",
        lambda: FunctionInspector("rule"),
        Raises(TypeError, "needs a callable"),
    ),
    case(
        "function-inspector-unknown-criterion",
        lambda: FunctionInspector(flags_harm, "nope"),
        Raises(UnknownCriterionError, "unknown criterion 'nope'"),
    ),
    case(
        "inspector-single-str-batch",
        lambda: FunctionInspector(flags_harm).score_batch("q", ["a"]),
        Raises(TypeError, "not a single str"),
    ),
    case(
        "inspector-negative-score",
        lambda: squad(score=lambda q, a: -0.5).align("q", FINE),
        Raises(
            ValueError,
            r"inspector 'ethical' \(FunctionInspector\) returned a score outside \[0, 1\] "
            r"for answer 0: -0.5",
        ),
    ),
    case(
        "inspector-infinite-score",
        lambda: squad(score=lambda q, a: math.inf).align("q", FINE),
        Raises(ValueError, "outside .* for answer 0: inf"),
    ),
    case(
        "inspector-complex-score",
        lambda: squad(score=lambda q, a: 1j).align("q", FINE),
        Raises(TypeError, "returned a non-number for answer 0: 1j"),
    ),
    case(
        "inspector-returns-a-bool",
        lambda: squad(score=lambda q, a: True).align("q", FINE),
        Raises(TypeError, "returned a non-number for answer 0: True"),
    ),
    case(
        "inspector-returns-a-numeric-string",
        lambda: squad(score=lambda q, a: "0.5").align("q", FINE),
        Raises(TypeError, "returned a non-number for answer 0: '0.5'"),
    ),
    case(
        "inspector-returns-a-numpy-bool",
        lambda: squad(score=lambda q, a: __import__("numpy").bool_(True)).align("q", FINE),
        Raises(TypeError, "returned a non-number for answer 0"),
    ),
    case(
        "inspector-too-few-scores",
        lambda: inspect_only(OneScoreInspector("ethical")).align_batch(["q", "q"], ["a", "b"]),
        Raises(
            ValueError, r"inspector 'ethical' \(OneScoreInspector\) returned 1 scores for 2 answers"
        ),
    ),
    case(
        "inspector-no-scores",
        lambda: inspect_only(NoScoresInspector("ethical")).align("q", "a"),
        Raises(TypeError, "returned NoneType, not a list of scores"),
    ),
    case(
        "request-inspector-threshold-above-one",
        lambda: FunctionRequestInspector(lambda r: 0.5).check("r", threshold=1.5),
        Raises(ValueError, r"threshold must be in \[0, 1\], got 1.5"),
    ),
    case(
        "request-inspector-threshold-nan",
        lambda: FunctionRequestInspector(lambda r: 0.5).check("r", threshold=math.nan),
        Raises(ValueError, r"threshold must be in \[0, 1\], got nan"),
    ),
    case(
        "request-inspector-built-with-threshold-3",
        lambda: FunctionRequestInspector(lambda r: 0.5, threshold=3).check("r"),
        Raises(ValueError, r"threshold must be in \[0, 1\], got 3"),
    ),
    case(
        "request-inspector-single-str",
        lambda: FunctionRequestInspector(lambda r: 0.5).score_batch("r"),
        Raises(TypeError, "use score\\(\\) for one request"),
    ),
    case(
        "request-inspector-int-request",
        lambda: FunctionRequestInspector(lambda r: 0.5).score_batch(["ok", 3]),
        Raises(TypeError, "request 1 must be a str, got int"),
    ),
    case(
        "request-inspector-score-out-of-range",
        lambda: FunctionRequestInspector(lambda r: 7).check("r"),
        Raises(ValueError, r"outside \[0, 1\]"),
    ),
    case(
        "request-inspector-score-is-a-bool",
        lambda: FunctionRequestInspector(lambda r: False).check("r"),
        Raises(TypeError, "returned a non-number for request 0: False"),
    ),
    case(
        "request-inspector-score-not-a-number",
        lambda: FunctionRequestInspector(lambda r: "high").check("r"),
        Raises(TypeError, "request inspector FunctionRequestInspector returned a non-number"),
    ),
    # -- graceful: on_error="return_original" keeps the answer and says why
    case(
        "ro-empty-answer-in-batch",
        lambda: squad(**RETURN).align_batch(["q"] * 3, [HARMFUL, "", FINE]),
        Kept("", r"answers\[1\]: answer is empty", at=1, others=((0, "rewritten"), (2, "passed"))),
    ),
    case(
        "ro-none-answer-in-batch",
        lambda: squad(**RETURN).align_batch(["q", "q"], [HARMFUL, None]),
        Kept(
            "",
            r"answers\[1\]: answer must be a str, got NoneType",
            at=1,
            others=((0, "rewritten"),),
        ),
    ),
    case(
        "ro-bytes-answer",
        lambda: squad(**RETURN).align("q", b"x"),
        Kept("", r"answers\[0\]: answer must be a str, got bytes"),
    ),
    case(
        "ro-none-question",
        lambda: squad(**RETURN).align(None, HARMFUL),
        Kept(HARMFUL, r"questions\[0\]: question must be a str, got NoneType"),
    ),
    case(
        "ro-surrogate-question",
        lambda: squad(**RETURN).align("\udcff", HARMFUL),
        Kept(HARMFUL, "question is not valid Unicode text"),
    ),
    case(
        "ro-surrogate-answer",
        lambda: squad(**RETURN).align("q", SURROGATE),
        Kept(SURROGATE, r"answers\[0\]: answer is not valid Unicode text: a lone surrogate"),
    ),
    case(
        "ro-check-batch-blank-answer",
        lambda: squad(**RETURN).check_batch(["q", "q"], [FINE, " "]),
        Kept(" ", r"answers\[1\]: answer is empty", at=1, others=((0, "passed"),)),
    ),
    case(
        "ro-aalign-batch-int-answer",
        lambda: run(squad(**RETURN).aalign_batch(["q", "q"], [HARMFUL, 7])),
        Kept("", r"answers\[1\]: answer must be a str, got int", at=1, others=((0, "rewritten"),)),
    ),
    case(
        "ro-inspector-too-few-scores",
        lambda: inspect_only(OneScoreInspector("ethical"), **RETURN).align_batch(
            ["q", "q"], ["a", "b"]
        ),
        Kept("b", "returned 1 scores for 2 answers", at=1),
    ),
    case(
        "ro-inspector-no-scores",
        lambda: inspect_only(NoScoresInspector("ethical"), **RETURN).align("q", "a"),
        Kept("a", "not a list of scores"),
    ),
    case(
        "ro-block-policy-keeps-bad-item",
        lambda: squad(on_flag="block", **RETURN).align_batch(["q", "q"], [HARMFUL, ""]),
        Kept("", "answer is empty", at=1, others=((0, "blocked"),)),
    ),
    case(
        "ro-mismatched-batch-still-raises",
        lambda: squad(**RETURN).align_batch(["q"], []),
        Raises(ValueError, r"differ in length \(1 vs 0\)"),
    ),
    case(
        "ro-stream-empty-answer",
        lambda: streamed(squad(**RETURN).stream("q", "")),
        Kept("", "answer is empty"),
    ),
    case(
        "ro-stream-inspector-down",
        lambda: streamed(squad(score=inspector_down, **RETURN).stream("q", HARMFUL)),
        Kept(HARMFUL, "inspector service down"),
    ),
    # -- graceful whatever on_error says: a failing aligner never costs the answer
    case(
        "broken-aligner-async",
        lambda: run(squad(BrokenBackend()).aalign("q", HARMFUL)),
        Kept(
            HARMFUL,
            r"aligner failed \(ConnectionError: aligner server unreachable\)",
            action="flagged",
        ),
    ),
    case(
        "broken-aligner-stream",
        lambda: streamed(squad(BrokenBackend()).stream("q", HARMFUL)),
        Kept(HARMFUL, "aligner failed while streaming", action="flagged"),
    ),
    case(
        "empty-aligner-output",
        lambda: squad(ConstantBackend("")).align("q", HARMFUL),
        Kept(HARMFUL, "aligner produced empty text; kept the previous text", action="flagged"),
    ),
    case(
        "whitespace-aligner-output",
        lambda: squad(ConstantBackend(" \n ")).align("q", HARMFUL),
        Kept(HARMFUL, "aligner produced empty text", action="flagged"),
    ),
    case(
        "empty-aligner-output-stream",
        lambda: streamed(squad(ConstantBackend("")).stream("q", HARMFUL)),
        Kept(HARMFUL, "aligner produced empty text", action="flagged"),
    ),
    case(
        "rewrite-cut-at-max-new-tokens",
        lambda: squad(CutBackend("Talk to")).align("q", HARMFUL),
        Kept(
            HARMFUL,
            "rewrite stopped at max_new_tokens=7 before it ended; kept the previous text",
            action="flagged",
        ),
    ),
]


@pytest.mark.parametrize(("action", "outcome"), ENGINE_CASES)
def test_engine(action: Callable[[], Any], outcome: Outcome) -> None:
    verify(action, outcome)


# == 2. LangChain ===============================================================================


def lc(backend: GenerationBackend | None = None, score: Any = flags_harm, **fields: Any) -> Any:
    """An AlignerSquad over the known-score engine squad."""
    return AlignerSquad(squad=squad(backend, score), **fields)


def lc_return(**fields: Any) -> Any:
    return lc(on_error="return_original", **fields)


def gathered(chunks: Any) -> Any:
    """Join streamed message chunks into one message."""
    total = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    return total


async def agathered(chunks: AsyncIterator[Any]) -> Any:
    return gathered([chunk async for chunk in chunks])


def error_at(index: int, error: type[BaseException], pattern: str) -> Callable[[Any], None]:
    """A batch (return_exceptions=True) whose item ``index`` is its own clear error."""

    def check(outputs: list[Any]) -> None:
        assert isinstance(outputs[index], error), outputs
        assert re.search(pattern, str(outputs[index]))
        assert all(not isinstance(o, Exception) for i, o in enumerate(outputs) if i != index)

    return check


def agent_state(reply: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(QUESTION), AIMessage(reply, id="reply-1")]}


NOT_ALIGNABLE = "AlignerSquad aligns a str, a chat message, or a dict with a question and an answer"
IMAGE = {"type": "image", "url": "https://example.com/cat.png"}

LANGCHAIN_CASES = [
    # -- invoke with values that are not an answer
    case("invoke-empty-str", lambda: lc().invoke(""), Raises(ValueError, "answer is empty")),
    case("invoke-tab-newline", lambda: lc().invoke("\n\t"), Raises(ValueError, "answer is empty")),
    case(
        "invoke-none",
        lambda: lc().invoke(None),
        Raises(TypeError, f"{NOT_ALIGNABLE}; got NoneType"),
    ),
    case(
        "invoke-float", lambda: lc().invoke(3.14), Raises(TypeError, f"{NOT_ALIGNABLE}; got float")
    ),
    case("invoke-bytes", lambda: lc().invoke(b"an answer"), Raises(TypeError, "got bytes")),
    case(
        "invoke-list-of-messages",
        lambda: lc().invoke([AIMessage(FINE)]),
        Raises(TypeError, "got list"),
    ),
    case(
        "invoke-dict-without-answer",
        lambda: lc().invoke({"question": "q"}),
        Raises(ValueError, r"without an 'answer' key \(keys: \['question'\]\)"),
    ),
    case(
        "invoke-dict-answer-none",
        lambda: lc().invoke({"question": "q", "answer": None}),
        Raises(TypeError, "got NoneType"),
    ),
    case(
        "invoke-dict-answer-int",
        lambda: lc().invoke({"question": "q", "answer": 5}),
        Raises(TypeError, "got int"),
    ),
    case(
        "invoke-dict-other-answer-key",
        lambda: lc(answer_key="reply").invoke({"answer": FINE}),
        Raises(ValueError, r"without an 'reply' key \(keys: \['answer'\]\); set answer_key="),
    ),
    case(
        "invoke-dict-question-bytes",
        lambda: lc().invoke({"question": b"q", "answer": FINE}),
        Raises(TypeError, "cannot find a question in a chain input of type bytes"),
    ),
    case(
        "invoke-dict-question-dict",
        lambda: lc().invoke({"question": {"text": "q"}, "answer": FINE}),
        Raises(ValueError, r"has no 'question' key .*keys: \['text'\]"),
    ),
    case(
        "invoke-dict-question-surrogate",
        lambda: lc().invoke({"question": "q\udcff", "answer": FINE}),
        Raises(ValueError, "question is not valid Unicode text"),
    ),
    case(
        "invoke-answer-surrogate",
        lambda: lc().invoke(SURROGATE),
        Raises(
            ValueError,
            "answer is not valid Unicode text: a lone surrogate '\\\\udcff' at position 4",
        ),
    ),
    case(
        "invoke-empty-ai-message",
        lambda: lc().invoke(AIMessage(content="")),
        Raises(ValueError, "answer is empty"),
    ),
    case(
        "invoke-image-only-ai-message",
        lambda: lc().invoke(AIMessage(content=[IMAGE])),
        Raises(ValueError, "answer is empty"),
    ),
    case(
        "invoke-empty-tool-message",
        lambda: lc().invoke(ToolMessage(content="", tool_call_id="c1")),
        Raises(ValueError, "answer is empty"),
    ),
    case("ainvoke-bytes", lambda: run(lc().ainvoke(b"x")), Raises(TypeError, "got bytes")),
    case(
        "batch-none-item-is-its-own-error",
        lambda: lc().batch([FINE, None], return_exceptions=True),
        error_at(1, TypeError, "got NoneType"),
    ),
    case(
        "abatch-empty-item-is-its-own-error",
        lambda: run(lc().abatch(["", FINE], return_exceptions=True)),
        error_at(0, ValueError, "answer is empty"),
    ),
    case(
        "batch-empty-item-raises",
        lambda: lc().batch(["", FINE]),
        Raises(ValueError, "answer is empty"),
    ),
    case("stream-none", lambda: list(lc().stream(None)), Raises(TypeError, "got NoneType")),
    case(
        "astream-empty",
        lambda: run(agathered(lc().astream(""))),
        Raises(ValueError, "answer is empty"),
    ),
    case(
        "chain-model-writes-blank",
        lambda: (FakeListChatModel(responses=["  "]) | lc()).invoke("q"),
        Raises(ValueError, "answer is empty"),
    ),
    case(
        "chain-step-returns-none",
        lambda: (RunnableLambda(lambda _: None) | lc()).invoke("q"),
        Raises(TypeError, "got NoneType"),
    ),
    case(
        "wrap-input-without-question-key",
        lambda: lc().wrap(RunnableLambda(lambda _: FINE)).invoke({"query": "x"}),
        Raises(ValueError, r"no 'question' key .*pass question_key="),
    ),
    # -- configuration
    case(
        "config-unknown-criterion",
        lambda: AlignerSquad(criteria=untyped("ethicks")),
        Raises(ValidationError, r"unknown criteria \['ethicks'\]"),
    ),
    case(
        "parse-result-of-no-generations",
        lambda: lc().parse_result([]),
        Raises(ValueError, "parse_result got no generations"),
    ),
    case(
        "config-criteria-not-in-squad",
        lambda: lc(criteria=["helpful"]),
        Raises(ValidationError, r"\['helpful'\] are not in this squad"),
    ),
    case(
        "config-negative-threshold",
        lambda: AlignerSquad(threshold=-0.1),
        Raises(
            ValidationError, r"threshold\s+Value error, threshold must be in \[0, 1\], got -0.1"
        ),
    ),
    case(
        "config-nan-threshold",
        lambda: AlignerSquad(threshold=math.nan),
        Raises(ValidationError, "threshold"),
    ),
    case(
        "config-on-error-keep",
        lambda: AlignerSquad(on_error=untyped("keep")),
        Raises(ValidationError, r"on_error\s+Input should be 'raise' or 'return_original'"),
    ),
    case(
        "config-on-flag-uppercase",
        lambda: AlignerSquad(on_flag="BLOCK"),
        Raises(ValidationError, "on_flag"),
    ),
    case(
        "config-output-json",
        lambda: AlignerSquad(output=untyped("json")),
        Raises(ValidationError, "output"),
    ),
    case(
        "config-zero-max-new-tokens",
        lambda: AlignerSquad(max_new_tokens=0),
        Raises(ValidationError, "max_new_tokens"),
    ),
    case(
        "config-zero-max-rounds",
        lambda: AlignerSquad(max_rounds=0),
        Raises(ValidationError, "max_rounds"),
    ),
    case(
        "config-unknown-ordering",
        lambda: AlignerSquad(ordering=untyped("random")),
        Raises(ValidationError, "ordering"),
    ),
    case(
        "config-squad-not-a-squad",
        lambda: AlignerSquad(squad="ethical"),
        Raises(ValidationError, r"squad\s+Input should be an instance of Squad"),
    ),
    case(
        "config-misspelt-option",
        lambda: AlignerSquad(**MISSPELT),
        Raises(ValidationError, r"thresold\s+Extra inputs are not permitted"),
    ),
    case(
        "config-blank-blocked-message",
        lambda: lc(blocked_message="  "),
        Raises(ValidationError, "blocked_message must have text"),
    ),
    case(
        "configurable-threshold-two",
        lambda: lc().configurable().invoke(FINE, config={"configurable": {"aligner_threshold": 2}}),
        Raises(ValidationError, r"threshold\s+Value error, threshold must be in \[0, 1\]"),
    ),
    case(
        "configurable-unknown-criterion",
        lambda: (
            AlignerSquad(criteria=["ethical"])
            .configurable()
            .invoke(FINE, config={"configurable": {"aligner_criteria": "ethicks"}})
        ),
        Raises(ValidationError, r"unknown criteria \['ethicks'\]"),
    ),
    case(
        "configurable-check-only-maybe",
        lambda: (
            lc()
            .configurable()
            .invoke(FINE, config={"configurable": {"aligner_check_only": "maybe"}})
        ),
        Raises(ValidationError, "check_only"),
    ),
    case(
        "middleware-negative-request-threshold",
        lambda: AlignerSquadMiddleware(
            check_request=FunctionRequestInspector(lambda r: 0.5), request_threshold=-0.1
        ),
        Raises(ValueError, r"request_threshold must be in \[0, 1\], got -0.1"),
    ),
    case(
        "middleware-nan-request-threshold",
        lambda: AlignerSquadMiddleware(
            check_request=FunctionRequestInspector(lambda r: 0.5), request_threshold=math.nan
        ),
        Raises(ValueError, "request_threshold must be in .* got nan"),
    ),
    case(
        "middleware-on-error-keep",
        lambda: AlignerSquadMiddleware(on_error="keep"),
        Raises(ValidationError, "on_error"),
    ),
    case(
        "middleware-misspelt-option",
        lambda: AlignerSquadMiddleware(**MISSPELT),
        Raises(ValidationError, r"thresold\s+Extra inputs are not permitted"),
    ),
    case(
        "middleware-squad-a-str",
        lambda: AlignerSquadMiddleware("ethical"),
        Raises(ValidationError, "Input should be an instance of Squad"),
    ),
    case(
        "middleware-unknown-hook",
        lambda: AlignerSquadMiddleware(when=untyped("after_tool")),
        Raises(ValueError, "when must be 'after_agent' or 'after_model', got 'after_tool'"),
    ),
    case(
        "middleware-runnable-returns-text",
        lambda: AlignerSquadMiddleware(lc(output="text").configurable()).after_agent(
            untyped(agent_state(HARMFUL)), None
        ),
        Raises(TypeError, "must return a message .*got str"),
    ),
    case(
        "chat-model-zero-max-new-tokens",
        lambda: ChatAlignersLocal(max_new_tokens=0),
        Raises(ValidationError, "max_new_tokens"),
    ),
    case(
        "chat-model-misspelt-option",
        lambda: ChatAlignersLocal(max_new_token=5),
        Raises(ValidationError, "max_new_token"),
    ),
    case(
        "chat-model-both-token-limits",
        lambda: ChatAlignersLocal(max_tokens=5, max_new_tokens=6),
        Raises(ValidationError, "max_tokens or max_new_tokens, not both"),
    ),
    case(
        "llamaindex-llm-misspelt-option",
        lambda: AlignersLLM(max_new_token=5),
        Raises(ValidationError, "max_new_token"),
    ),
    case(
        "chat-model-negative-temperature",
        lambda: ChatAlignersLocal(temperature=-1),
        Raises(ValidationError, "temperature"),
    ),
    case(
        "chat-model-unknown-overflow",
        lambda: ChatAlignersLocal(overflow=untyped("drop")),
        Raises(ValidationError, "overflow"),
    ),
    case(
        "chat-model-missing-model-path",
        lambda: ChatAlignersLocal(model="/no/such/model").invoke("hi"),
        Raises(ModelNotFoundError, "model path '/no/such/model' does not exist"),
    ),
    case(
        "chat-model-function-message",
        lambda: run(
            ChatAlignersLocal(model="/no/such/model").ainvoke(
                [FunctionMessage(content="x", name="f")]
            )
        ),
        Raises(TypeError, "cannot send a FunctionMessage"),
    ),
    # -- graceful: the answer is handed back with the reason in its record
    case(
        "ro-dict-empty-answer",
        lambda: lc_return(output="record").invoke({"question": "q", "answer": ""}),
        Kept("", "answer is empty"),
    ),
    case(
        "ro-surrogate-message",
        lambda: lc_return().invoke(AIMessage(SURROGATE)),
        Kept(SURROGATE, "answer is not valid Unicode text"),
    ),
    case(
        "ro-dict-question-int",
        lambda: lc_return(output="record").invoke({"question": 42, "answer": FINE}),
        Kept(FINE, "chain input of type int"),
    ),
    case(
        "ro-none-still-raises", lambda: lc_return().invoke(None), Raises(TypeError, "got NoneType")
    ),
    case(
        "ro-batch-empty-item-handed-back",
        lambda: lc_return().batch([FINE, "", HARMFUL]),
        Equals([FINE, "", FIXED]),
    ),
    case(
        "ro-model-writes-empty-reply",
        lambda: (FakeListChatModel(responses=[""]) | lc_return()).invoke("q"),
        Kept("", "answer is empty"),
    ),
    case(
        "ro-astream-surrogate-message",
        lambda: run(agathered(lc_return().astream(AIMessage(SURROGATE)))),
        Kept(SURROGATE, "not valid Unicode text"),
    ),
    case(
        "ro-stream-inspector-down",
        lambda: gathered(
            lc(score=inspector_down, on_error="return_original").stream(AIMessage(HARMFUL))
        ),
        Kept(HARMFUL, "inspector service down"),
    ),
    case(
        "broken-aligner-keeps-the-message",
        lambda: lc(BrokenBackend()).invoke(AIMessage(HARMFUL)),
        Kept(HARMFUL, r"aligner failed \(ConnectionError", action="flagged"),
    ),
    case(
        "empty-aligner-output-keeps-the-text",
        lambda: lc(ConstantBackend(""), output="record").invoke(HARMFUL),
        Kept(HARMFUL, "aligner produced empty text", action="flagged"),
    ),
    case(
        "inspector-down-raises-by-default",
        lambda: lc(score=inspector_down).invoke(AIMessage(HARMFUL)),
        Raises(RuntimeError, "inspector service down"),
    ),
]


@pytest.mark.parametrize(("action", "outcome"), LANGCHAIN_CASES)
def test_langchain(action: Callable[[], Any], outcome: Outcome) -> None:
    verify(action, outcome)


# == 3. LlamaIndex ==============================================================================


class AnswerEngine(CustomQueryEngine):
    """A real llama-index query engine that answers every query with ``answer``."""

    answer: Any = FINE
    calls: int = 0

    def custom_query(self, query_str: str) -> Any:
        self.calls += 1
        return self.answer


class ScriptedLLM(CustomLLM):
    """A real llama-index LLM that always replies ``reply``."""

    reply: str = FINE

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=64)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.reply)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield CompletionResponse(text=self.reply, delta=self.reply)


class Verdict(BaseModel):
    allowed: bool = True


def qe(answer: Any = FINE, squad_: Squad | None = None, **options: Any) -> AlignedQueryEngine:
    return AlignedQueryEngine(AnswerEngine(answer=answer), squad=squad_ or squad(), **options)


def chat(reply: str = FINE, **options: Any) -> AlignedChatEngine:
    inner = SimpleChatEngine.from_defaults(llm=ScriptedLLM(reply=reply))
    return AlignedChatEngine(inner, squad=squad(), **options)


def nodes(*texts: str) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t), score=1.0) for t in texts]


def post(**options: Any) -> AlignerPostprocessor:
    return AlignerPostprocessor(squad=squad(), **options)


def pieces(*texts: str) -> Generator[str, None, None]:
    yield from texts


def drained(response: Any) -> tuple[str, dict[str, Any]]:
    """A streaming response read to its end: the text, and the record set once it ended."""
    text = "".join(response.response_gen)
    return text, response.metadata[METADATA_KEY]


def unknown_criterion_query() -> Any:
    inner = AnswerEngine(answer=FINE)
    try:
        return AlignedQueryEngine(inner, criteria=["ethicks"]).query("q")
    finally:
        assert inner.calls == 0  # the misconfiguration is found before the wrapped engine runs


REQUEST_RULE = FunctionRequestInspector(lambda request: 0.9)
#: A request inspector that turns every request away.
REFUSE_ALL = FunctionRequestInspector(lambda request: 0.0)
#: What a request turned away under on_flag="raise" raises (as the proxy's 422).
REQUEST_RAISED = Raises(
    AlignmentViolation,
    r"request turned away before any model ran \(the request inspector scored the request "
    r"0\.00, under 0\.50\)",
)


def raised_request(action: Callable[[], Any]) -> None:
    """``action`` raises the request's violation, whose record says where it was decided."""
    with pytest.raises(AlignmentViolation) as caught:
        action()
    result = caught.value.result
    assert result.stage == "request" and result.action == "raised" and result.on_flag == "raise"
    assert result.request_check["allowed"] is False


def astream_chat_text(engine: AlignedChatEngine, message: str) -> str:
    async def go() -> str:
        response = await engine.astream_chat(message)
        return "".join([piece async for piece in response.async_response_gen()])

    return run(go())


LLAMAINDEX_CASES = [
    # -- a request turned away under on_flag="raise" raises, as the proxy's 422 does
    case(
        "qe-check-request-raise",
        lambda: qe(check_request=REFUSE_ALL, on_flag="raise").query("q"),
        REQUEST_RAISED,
    ),
    case(
        "qe-check-request-raise-async",
        lambda: run(qe(check_request=REFUSE_ALL, on_flag="raise").aquery("q")),
        REQUEST_RAISED,
    ),
    case(
        "qe-check-request-raise-record",
        lambda: raised_request(lambda: qe(check_request=REFUSE_ALL, on_flag="raise").query("How?")),
        Equals(None),
    ),
    case(
        "qe-check-request-raise-check-only-blocks",
        lambda: qe(check_request=REFUSE_ALL, on_flag="raise", check_only=True).query("q"),
        Kept(DEFAULT_BLOCKED_MESSAGE, "", action="blocked"),
    ),
    case(
        "qe-check-request-raise-from-the-squad",
        lambda: qe(squad_=squad(on_flag="raise"), check_request=REFUSE_ALL).query("q"),
        REQUEST_RAISED,
    ),
    case(
        "chat-check-request-raise",
        lambda: chat(check_request=REFUSE_ALL, on_flag="raise").chat("hi"),
        REQUEST_RAISED,
    ),
    case(
        "chat-check-request-raise-async",
        lambda: run(chat(check_request=REFUSE_ALL, on_flag="raise").achat("hi")),
        REQUEST_RAISED,
    ),
    case(
        "chat-check-request-raise-stream",
        lambda: chat(check_request=REFUSE_ALL, on_flag="raise").stream_chat("hi"),
        REQUEST_RAISED,
    ),
    case(
        "chat-check-request-raise-astream",
        lambda: astream_chat_text(chat(check_request=REFUSE_ALL, on_flag="raise"), "hi"),
        REQUEST_RAISED,
    ),
    # -- AlignedQueryEngine
    case(
        "qe-wraps-a-str",
        lambda: AlignedQueryEngine(untyped("engine")),
        Raises(TypeError, "wraps a llama-index BaseQueryEngine, got str"),
    ),
    case(
        "qe-wraps-an-llm",
        lambda: AlignedQueryEngine(untyped(MockLLM())),
        Raises(TypeError, "BaseQueryEngine, got MockLLM"),
    ),
    case(
        "qe-squad-not-a-squad",
        lambda: AlignedQueryEngine(AnswerEngine(), squad="ethical"),
        Raises(TypeError, "squad must be an aligners.Squad, got str"),
    ),
    case(
        "qe-no-criteria",
        lambda: qe(criteria=[]),
        Raises(ValidationError, "criteria must name at least one criterion"),
    ),
    case(
        "qe-criteria-not-in-squad",
        lambda: qe(criteria=["ethicks"]),
        Raises(ValueError, r"criteria \['ethicks'\] are not in this squad"),
    ),
    case(
        "qe-threshold-above-one",
        lambda: qe(threshold=1.5),
        Raises(ValidationError, r"threshold must be in \[0, 1\], got 1.5"),
    ),
    case(
        "qe-threshold-map-negative",
        lambda: qe(threshold={"ethical": -0.2}),
        Raises(ValidationError, r"threshold\['ethical'\] must be in \[0, 1\], got -0.2"),
    ),
    case(
        "qe-threshold-nan",
        lambda: qe(threshold=math.nan),
        Raises(ValidationError, r"threshold must be in \[0, 1\], got nan"),
    ),
    case(
        "qe-threshold-text",
        lambda: qe(threshold="high"),
        Raises(ValidationError, r"threshold must be a number in \[0, 1\], got str 'high'"),
    ),
    case(
        "qe-threshold-for-absent-criterion",
        lambda: qe(threshold={"helpful": 0.3}),
        Raises(
            ValueError, r"thresholds given for criteria \['helpful'\] that are not in the squad"
        ),
    ),
    case(
        "qe-on-error-ignore",
        lambda: qe(on_error="ignore"),
        Raises(ValidationError, r"on_error\s+Input should be 'raise' or 'return_original'"),
    ),
    case("qe-on-flag-explode", lambda: qe(on_flag="explode"), Raises(ValidationError, "on_flag")),
    case(
        "qe-empty-blocked-message",
        lambda: qe(blocked_message=""),
        Raises(ValidationError, "blocked_message must have text"),
    ),
    case(
        "qe-negative-request-threshold",
        lambda: qe(check_request=REQUEST_RULE, request_threshold=-0.5),
        Raises(ValueError, r"request_threshold must be in \[0, 1\], got -0.5"),
    ),
    case(
        "qe-nan-request-threshold",
        lambda: qe(check_request=REQUEST_RULE, request_threshold=math.nan),
        Raises(ValueError, "request_threshold must be in .* got nan"),
    ),
    case(
        "qe-query-none",
        lambda: qe().query(None),
        Raises(ValidationError, r"query\.str\s+Input should be a valid string"),
    ),
    case(
        "qe-query-blank-bundle",
        lambda: qe().query(QueryBundle(query_str="\t")),
        Raises(ValueError, r"the query is empty \('\\t'\)"),
    ),
    case(
        "qe-inner-engine-returns-int",
        lambda: qe(answer=42).query("q"),
        Raises(TypeError, "cannot align a response of type int"),
    ),
    case(
        "qe-unknown-criterion-of-default-squad",
        unknown_criterion_query,
        Raises(UnknownCriterionError, "unknown criterion 'ethicks'"),
    ),
    case(
        "qe-surrogate-answer-raise",
        lambda: qe(answer=SURROGATE, on_error="raise").query("q"),
        Raises(ValueError, r"answers\[0\]: answer is not valid Unicode text"),
    ),
    case(
        "qe-inspector-down-raise",
        lambda: qe(squad_=squad(score=inspector_down), on_error="raise").query("q"),
        Raises(RuntimeError, "inspector service down"),
    ),
    # -- AlignedChatEngine
    case(
        "ce-wraps-a-str",
        lambda: AlignedChatEngine(untyped("engine")),
        Raises(TypeError, "wraps a llama-index BaseChatEngine, got str"),
    ),
    case(
        "ce-update-memory-maybe",
        lambda: chat(update_memory=untyped("maybe")),
        Raises(TypeError, "update_memory must be True or False, got 'maybe'"),
    ),
    case(
        "ce-on-error-ignore", lambda: chat(on_error="ignore"), Raises(ValidationError, "on_error")
    ),
    case(
        "ce-chat-none",
        lambda: chat().chat(untyped(None)),
        Raises(TypeError, "the chat message must be a str, got NoneType"),
    ),
    case(
        "ce-achat-int",
        lambda: run(chat().achat(untyped(42))),
        Raises(TypeError, "the chat message must be a str, got int"),
    ),
    case(
        "ce-stream-chat-bytes",
        lambda: chat().stream_chat(untyped(b"hi")),
        Raises(TypeError, "the chat message must be a str, got bytes"),
    ),
    case(
        "ce-surrogate-reply-raise",
        lambda: chat(SURROGATE, on_error="raise").chat("hi"),
        Raises(ValueError, "answer is not valid Unicode text"),
    ),
    # -- AlignerPostprocessor and settings
    case(
        "pp-squad-not-a-squad",
        lambda: AlignerPostprocessor(squad="ethical"),
        Raises((TypeError, ValidationError), "squad must be an aligners.Squad, got str"),
    ),
    case(
        "pp-unknown-mode",
        lambda: post(mode="delete"),
        Raises(ValidationError, r"mode\s+Input should be 'drop', 'rewrite' or 'annotate'"),
    ),
    case(
        "pp-threshold-nan",
        lambda: post(threshold=math.nan),
        Raises(ValidationError, r"threshold must be in \[0, 1\], got nan"),
    ),
    case(
        "pp-criteria-a-str",
        lambda: post(criteria="ethicks"),
        Raises(ValidationError, r"criteria\s+Input should be a valid list"),
    ),
    case(
        "pp-on-error-ignore", lambda: post(on_error="ignore"), Raises(ValidationError, "on_error")
    ),
    case(
        "pp-fail-closed-maybe",
        lambda: post(fail_closed="maybe"),
        Raises(ValidationError, "fail_closed"),
    ),
    case(
        "pp-misspelt-option",
        lambda: post(**MISSPELT),
        Raises(ValidationError, r"thresold\s+Extra inputs are not permitted"),
    ),
    case(
        "pp-wrap-a-str",
        lambda: post().wrap(untyped("engine")),
        Raises(TypeError, "wrap\\(\\) takes a llama-index query engine or chat engine, got str"),
    ),
    case(
        "pp-text-nodes-not-scored",
        lambda: post().postprocess_nodes(untyped([TextNode(text=FINE)]), query_str="q"),
        Raises(TypeError, r"nodes\[0\] must be a NodeWithScore, got TextNode"),
    ),
    case(
        "pp-surrogate-node-raise",
        lambda: post(on_error="raise").postprocess_nodes(nodes(FINE, SURROGATE), query_str="q"),
        Raises(ValueError, r"answers\[1\]: answer is not valid Unicode text"),
    ),
    case(
        "settings-unknown-field",
        lambda: AlignmentSettings(**untyped({"unknown": 1})),
        Raises(ValidationError, r"unknown\s+Extra inputs are not permitted"),
    ),
    # -- graceful: the answer (or node) comes back with the reason in its record
    case(
        "qe-empty-answer",
        lambda: qe(answer="").query("q"),
        Kept("", "empty answer", action="skipped"),
    ),
    case(
        "qe-whitespace-answer",
        lambda: qe(answer="  \n").query("q"),
        Kept("  \n", "empty answer", action="skipped"),
    ),
    case(
        "qe-surrogate-answer",
        lambda: qe(answer=SURROGATE).query("q"),
        Kept(SURROGATE, r"answers\[0\]: answer is not valid Unicode text"),
    ),
    case(
        "qe-surrogate-answer-async",
        lambda: run(qe(answer=SURROGATE).aquery("q")),
        Kept(SURROGATE, "not valid Unicode text"),
    ),
    case(
        "qe-surrogate-query",
        lambda: qe(answer=HARMFUL).query("q \udcff"),
        Kept(HARMFUL, r"questions\[0\]: question is not valid Unicode text"),
    ),
    case(
        "qe-inspector-nan",
        lambda: qe(answer=HARMFUL, squad_=squad(score=lambda q, a: math.nan)).query("q"),
        Kept(HARMFUL, r"outside \[0, 1\] for answer 0: nan"),
    ),
    case(
        "qe-broken-aligner",
        lambda: qe(answer=HARMFUL, squad_=squad(BrokenBackend())).query("q"),
        Kept(HARMFUL, r"aligner failed \(ConnectionError", action="flagged"),
    ),
    case(
        "qe-structured-response",
        lambda: qe(answer=PydanticResponse(Verdict())).query("q"),
        Kept(Verdict(), r"structured \(pydantic\) response", action="skipped"),
    ),
    case(
        "qe-response-without-text",
        lambda: qe(answer=Response(None)).query("q"),
        Kept(None, "no answer text", action="skipped"),
    ),
    case(
        "qe-empty-stream",
        lambda: drained(qe(answer=StreamingResponse(response_gen=pieces())).query("q")),
        Kept("", "empty answer", action="skipped"),
    ),
    case(
        "qe-surrogate-stream",
        lambda: drained(
            qe(answer=StreamingResponse(response_gen=pieces("bad ", "\udcff byte"))).query("q")
        ),
        Kept(SURROGATE, "not valid Unicode text"),
    ),
    case("ce-empty-reply", lambda: chat("").chat("hi"), Kept("", "empty answer", action="skipped")),
    case(
        "ce-surrogate-reply",
        lambda: chat(SURROGATE).chat("hi"),
        Kept(SURROGATE, r"answers\[0\]: answer is not valid Unicode text"),
    ),
    case(
        "ce-surrogate-message",
        lambda: chat(HARMFUL).chat("hi \udcff"),
        Kept(HARMFUL, r"questions\[0\]: question is not valid Unicode text"),
    ),
    case(
        "pp-surrogate-node",
        lambda: post().postprocess_nodes(nodes(SURROGATE), query_str="q"),
        Kept(SURROGATE, r"answers\[0\]: answer is not valid Unicode text.*node kept as is"),
    ),
    case(
        "pp-surrogate-query",
        lambda: post().postprocess_nodes(nodes(FINE, HARMFUL), query_str="\udcff"),
        Kept(HARMFUL, "question is not valid Unicode text", at=1, others=((0, "failed"),)),
    ),
    case(
        "pp-surrogate-node-fail-closed",
        lambda: post(fail_closed=True).postprocess_nodes(nodes(SURROGATE), query_str="q"),
        Equals([]),
    ),
]


@pytest.mark.parametrize(("action", "outcome"), LLAMAINDEX_CASES)
def test_llamaindex(action: Callable[[], Any], outcome: Outcome) -> None:
    verify(action, outcome)


# == 4. the CLI =================================================================================


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    tmp: Path


@dataclass(frozen=True)
class Exits:
    """The CLI exits with ``code`` and one ``error:`` line on stderr matching ``stderr``."""

    code: int
    stderr: str

    def __call__(self, done: CliRun) -> None:
        assert done.code == self.code, done
        assert "Traceback" not in done.stderr
        assert re.search(rf"^error: .*{self.stderr}", done.stderr, re.MULTILINE), done.stderr


@dataclass(frozen=True)
class Fake:
    """The squad the CLI builds (after the real option checks): a rule inspector and an aligner
    that writes FIXED, or one whose server is down."""

    score: Callable[[str, str], Any] = flags_harm
    broken: bool = False


REAL_BUILD_SQUAD = cli_align.build_squad


def fake_build_squad(fake: Fake) -> Callable[..., Squad]:
    def build(
        criteria: Any,
        format: Any,
        model: Any,
        device: Any,
        policy: SquadPolicy | None = None,
        **options: Any,
    ) -> Squad:
        # The real checks of every option (criteria, format, budgets, policy); loads nothing.
        REAL_BUILD_SQUAD(criteria, format, model, device, policy, **options)
        backend = BrokenBackend() if fake.broken else ConstantBackend(FIXED)
        return squad(backend, fake.score).with_options(policy=policy)

    return build


def refuse_to_serve(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a bad option reached the point of starting the server")


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def cli_kept(texts: list[str], reason: str, action: str = "failed") -> Callable[[CliRun], None]:
    """Exit 0; every record keeps its answer, with ``action`` and the reason."""

    def check(done: CliRun) -> None:
        assert done.code == 0, done
        got = records(done.stdout)
        assert [r["text"] for r in got] == texts
        for record in got:
            assert record["action"] == action and re.search(reason, " ".join(record["failures"]))

    return check


def cli_skipped(texts: list[str], *problems: str) -> Callable[[CliRun], None]:
    """--skip-invalid: exit 0, the good lines aligned, each bad one reported on stderr."""

    def check(done: CliRun) -> None:
        assert done.code == 0, done
        assert [r["text"] for r in records(done.stdout)] == texts
        for problem in problems:
            assert re.search(rf"^skipped .*{problem}", done.stderr, re.MULTILINE), done.stderr

    return check


def output_written_or_refused(done: CliRun) -> None:
    written = done.tmp / "out.jsonl"
    assert written.exists() or (done.code == 2 and "--output" in done.stderr), done


def jsonl(*rows: Any) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


GOOD = {"question": "q", "answer": FINE}
PAIRS = "{tmp}/pairs.jsonl"


def cli(
    id: str,
    args: Sequence[str],
    outcome: Callable[[CliRun], None],
    *,
    pairs: bytes | None = None,
    fake: Fake = Fake(),
    bug: str | None = None,
    fails_with: type[BaseException] | None = None,
) -> Any:
    marks = []
    if bug is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=bug, raises=fails_with))
    return pytest.param(tuple(args), pairs, fake, outcome, id=id, marks=marks)


def prints(*lines: str) -> Callable[[CliRun], None]:
    """Exit 0 and stdout holds each of ``lines`` (regexes) on a line of its own."""

    def check(done: CliRun) -> None:
        assert done.code == 0, done
        for line in lines:
            assert re.search(rf"^{line}$", done.stdout, re.MULTILINE), done.stdout

    return check


CLI_CASES = [
    # -- what the human-readable output says about a flagged answer
    cli(
        "align-check-only-flagged-says-why-not-rewritten",
        ["align", "-q", "q", "-a", HARMFUL, "--check-only"],
        prints(
            r"decision : flagged: ethical < 0\.50",
            r"applied  : none \(flagged, not rewritten: --check-only scores only\)",
            f"aligned  : {HARMFUL}",
        ),
    ),
    cli(
        "align-check-only-passed",
        ["align", "-q", "q", "-a", FINE, "--check-only"],
        prints(r"applied  : none \(answer passed the inspectors\)"),
    ),
    cli(
        "align-block-flagged-says-why-not-rewritten",
        ["align", "-q", "q", "-a", HARMFUL, "--on-flag", "block"],
        prints(r"applied  : none \(flagged, not rewritten: on_flag=block runs no aligner\)"),
    ),
    # -- options
    cli(
        "align-neither-answer-nor-input",
        ["align"],
        Exits(2, "give exactly one of --answer or --input"),
    ),
    cli(
        "align-both-answer-and-input",
        ["align", "-a", FINE, "-i", PAIRS],
        Exits(2, "give exactly one of --answer or --input"),
        pairs=jsonl(GOOD),
    ),
    cli(
        "align-unknown-on-flag",
        ["align", "-a", FINE, "--on-flag", "explode"],
        Exits(
            2, r"--on-flag must be one of rewrite, block, raise, rewrite_or_block \(got 'explode'\)"
        ),
    ),
    cli(
        "align-blank-blocked-message",
        ["align", "-a", FINE, "--blocked-message", "  "],
        Exits(2, "--blocked-message must have text"),
    ),
    cli(
        "align-on-error-keep",
        ["align", "-a", FINE, "--on-error", "keep"],
        Exits(2, r"--on-error must be one of raise, return_original \(got 'keep'\)"),
    ),
    cli(
        "align-threshold-above-one",
        ["align", "-a", FINE, "--threshold", "1.5"],
        Exits(2, "'--threshold'.*less than or equal to 1"),
    ),
    cli(
        "align-threshold-nan",
        ["align", "-a", FINE, "--threshold", "nan"],
        Exits(2, "'--threshold'"),
    ),
    cli(
        "align-threshold-not-a-number",
        ["align", "-a", FINE, "--threshold", "high"],
        Exits(2, "'--threshold'.*valid number"),
    ),
    cli(
        "align-unknown-criterion",
        ["align", "-a", FINE, "--criteria", "ethicks"],
        Exits(2, "unknown criterion 'ethicks'"),
    ),
    cli(
        "align-no-criterion",
        ["align", "-a", FINE, "--criteria", " , "],
        Exits(2, "--criteria names no criterion"),
    ),
    cli(
        "align-unknown-format",
        ["align", "-a", FINE, "--format", "nope"],
        Exits(2, "unknown format 'nope'"),
    ),
    cli(
        "align-zero-max-new-tokens",
        ["align", "-a", FINE, "--max-new-tokens", "0"],
        Exits(2, "'--max-new-tokens'.*greater than or equal to 1"),
    ),
    cli(
        "align-zero-batch-size",
        ["align", "-i", PAIRS, "--batch-size", "0"],
        Exits(2, "'--batch-size'"),
        pairs=jsonl(GOOD),
    ),
    cli(
        "align-unknown-on-token-limit",
        ["align", "-a", FINE, "--on-token-limit", "ignore"],
        Exits(2, r"--on-token-limit must be one of keep_previous, accept \(got 'ignore'\)"),
    ),
    cli(
        "align-missing-input-file",
        ["align", "-i", "{tmp}/missing.jsonl"],
        Exits(2, "'--input'.*missing.jsonl' does not exist"),
    ),
    cli(
        "align-input-is-a-directory",
        ["align", "-i", "{tmp}"],
        Exits(2, "--input"),
    ),
    cli("align-unknown-option", ["align", "-a", FINE, "--foo"], Exits(2, "No such option: --foo")),
    cli(
        "align-answer-without-value",
        ["align", "--answer"],
        Exits(2, "Option '--answer' requires an argument"),
    ),
    cli("unknown-command", ["alig"], Exits(2, "No such command 'alig'")),
    cli("align-empty-answer", ["align", "-a", ""], Exits(2, r"answers\[0\]: answer is empty")),
    cli(
        "align-surrogate-answer",
        ["align", "-a", SURROGATE],
        Exits(2, r"answers\[0\]: answer is not valid Unicode text"),
    ),
    cli(
        "align-surrogate-question",
        ["align", "-q", "q \udcff", "-a", FINE],
        Exits(2, r"questions\[0\]: question is not valid Unicode text"),
    ),
    cli(
        "align-inspector-down",
        ["align", "-a", FINE],
        Exits(2, "inspector service down"),
        fake=Fake(score=inspector_down),
    ),
    cli(
        "align-inspector-unreachable",
        ["align", "-a", FINE],
        Exits(2, "inspector server unreachable"),
        fake=Fake(score=inspector_unreachable),
    ),
    cli(
        "align-output-in-missing-directory",
        ["align", "-i", PAIRS, "-o", "{tmp}/nowhere/out.jsonl"],
        Exits(2, "--output: folder .*nowhere does not exist"),
        pairs=jsonl(GOOD),
    ),
    cli(
        "align-output-is-a-directory",
        ["align", "-i", PAIRS, "-o", "{tmp}"],
        Exits(2, "--output"),
        pairs=jsonl(GOOD),
    ),
    cli(
        "align-answer-with-output",
        ["align", "-a", HARMFUL, "-o", "{tmp}/out.jsonl"],
        output_written_or_refused,
    ),
    # -- input files, named by file and line
    cli(
        "jsonl-bad-json-line-3",
        ["align", "-i", PAIRS],
        Exits(2, r"pairs.jsonl:3: not valid JSON"),
        pairs=jsonl(GOOD, GOOD, b'{"answer": '),
    ),
    cli(
        "jsonl-trailing-garbage",
        ["align", "-i", PAIRS],
        Exits(2, r"pairs.jsonl:1: not valid JSON \(Extra data\)"),
        pairs=jsonl(b'{"answer": "a"} x'),
    ),
    cli(
        "jsonl-utf8-bom",
        ["align", "-i", PAIRS],
        Exits(2, r"pairs.jsonl:1: not valid JSON \(Unexpected UTF-8 BOM"),
        pairs=b'\xef\xbb\xbf{"answer": "a"}\n',
    ),
    cli(
        "jsonl-latin1-byte",
        ["align", "-i", PAIRS],
        Exits(2, r"pairs.jsonl:2: not valid UTF-8 \(byte 0xe9 at position 15\)"),
        pairs=jsonl(GOOD, b'{"answer": "caf\xe9"}'),
    ),
    cli(
        "jsonl-array-line",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: each line needs a string field 'answer'"),
        pairs=jsonl([1, 2]),
    ),
    cli(
        "jsonl-answer-number",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:2: each line needs a string field 'answer'"),
        pairs=jsonl(GOOD, {"answer": 5}),
    ),
    cli(
        "jsonl-answer-missing",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: each line needs a string field 'answer'"),
        pairs=jsonl({"question": "q"}),
    ),
    cli(
        "jsonl-answer-null",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: each line needs a string field 'answer'"),
        pairs=jsonl({"answer": None}),
    ),
    cli(
        "jsonl-answer-nan",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: each line needs a string field 'answer'"),
        pairs=b'{"answer": NaN}\n',
    ),
    cli(
        "jsonl-question-list",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: field 'question' must be a string"),
        pairs=jsonl({"question": ["q"], "answer": "a"}),
    ),
    cli(
        "jsonl-question-null",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:1: field 'question' must be a string"),
        pairs=jsonl({"question": None, "answer": "a"}),
    ),
    cli(
        "jsonl-surrogate-question-after-blank-line",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:3: question is not valid Unicode text"),
        pairs=jsonl(GOOD, b"", b'{"question": "\\ud800", "answer": "a"}'),
    ),
    cli(
        "jsonl-tab-answer-line-4",
        ["align", "-i", PAIRS],
        Exits(2, "pairs.jsonl:4: answer is empty"),
        pairs=jsonl(GOOD, GOOD, GOOD, {"answer": "\t"}),
    ),
    # -- graceful
    cli(
        "skip-invalid-all-bad",
        ["align", "-i", PAIRS, "--skip-invalid"],
        cli_skipped([], "pairs.jsonl:1: not valid JSON", "pairs.jsonl:2: each line needs"),
        pairs=jsonl(b"{", b"[]"),
    ),
    cli(
        "skip-invalid-mixed",
        ["align", "-i", PAIRS, "--skip-invalid"],
        cli_skipped([FIXED, FINE], "pairs.jsonl:2: not valid UTF-8"),
        pairs=jsonl({"answer": HARMFUL}, b"\xc3\x28", GOOD),
    ),
    cli(
        "on-error-return-original-empty-answer",
        ["align", "-a", "", "--on-error", "return_original", "--json"],
        cli_kept([""], r"answers\[0\]: answer is empty"),
    ),
    cli(
        "on-error-return-original-inspector-unreachable",
        ["align", "-i", PAIRS, "--on-error", "return_original"],
        cli_kept([FINE, HARMFUL], "inspector server unreachable"),
        pairs=jsonl(GOOD, {"answer": HARMFUL}),
        fake=Fake(score=inspector_unreachable),
    ),
    cli(
        "broken-aligner-keeps-the-answer",
        ["align", "-a", HARMFUL, "--json"],
        cli_kept([HARMFUL], r"aligner failed \(ConnectionError", action="flagged"),
        fake=Fake(broken=True),
    ),
    # -- serve: every bad option is refused before a server starts
    cli(
        "serve-unknown-on-flag",
        ["serve", "--on-flag", "explode"],
        Exits(2, "--on-flag must be one of"),
    ),
    cli(
        "serve-plain-with-policy",
        ["serve", "--plain", "--on-flag", "block"],
        Exits(2, "go with the proxy, not --plain"),
    ),
    cli(
        "serve-ftp-upstream",
        ["serve", "--upstream-url", "ftp://x", "--upstream-model", "m"],
        Exits(2, "upstream_url must be an http\\(s\\) URL, got 'ftp://x'"),
    ),
    cli(
        "serve-upstream-without-model",
        ["serve", "--upstream-url", "http://gpu:8000/v1"],
        Exits(2, "upstream_model is required with upstream_url"),
    ),
    cli(
        "serve-blank-blocked-message",
        ["serve", "--blocked-message", " "],
        Exits(2, "--blocked-message must have text"),
    ),
    cli(
        "serve-on-error-keep",
        ["serve", "--on-error", "keep"],
        Exits(2, r"--on-error must be one of raise, return_original \(got 'keep'\)"),
    ),
    cli(
        "serve-aligner-url-without-model",
        ["serve", "--aligner-url", "http://gpu:8001/v1"],
        Exits(2, "--aligner-model is required with --aligner-url"),
    ),
    cli(
        "serve-classifier-without-plain",
        ["serve", "--classifier", "clf"],
        Exits(2, "--classifier and --adapter go with --plain"),
    ),
    cli(
        "serve-port-out-of-range",
        ["serve", "--port", "70000"],
        Exits(2, "'--port'.*less than or equal to 65535"),
    ),
    cli(
        "serve-unknown-criterion",
        ["serve", "--criteria", "ethicks"],
        Exits(2, "unknown criterion 'ethicks'"),
    ),
    cli(
        "serve-request-threshold-two",
        ["serve", "--request-threshold", "2"],
        Exits(2, "'--request-threshold'"),
    ),
    # -- data
    cli(
        "data-convert-unknown-layout",
        ["data", "convert", PAIRS, "-o", "{tmp}/o.jsonl", "--layout", "nope"],
        Exits(2, "unknown layout 'nope'; known: auto"),
    ),
    cli(
        "data-convert-unknown-target",
        ["data", "convert", PAIRS, "-o", "{tmp}/o.jsonl", "--to", "csv"],
        Exits(2, "--to must be 'triples' or 'examples'"),
    ),
    cli(
        "data-split-eval-fraction",
        [
            "data",
            "split",
            PAIRS,
            "-o",
            "{tmp}/o.jsonl",
            "--eval-output",
            "{tmp}/e.jsonl",
            "--eval-fraction",
            "1.5",
        ],
        Exits(2, "--eval-fraction must be between 0 and 1"),
    ),
    cli(
        "data-convert-missing-file",
        ["data", "convert", "{tmp}/missing.jsonl", "-o", "{tmp}/o.jsonl"],
        Exits(2, "data file not found: .*missing.jsonl"),
    ),
]


@pytest.mark.parametrize(("args", "pairs", "fake", "outcome"), CLI_CASES)
def test_cli(
    args: tuple[str, ...],
    pairs: bytes | None,
    fake: Fake,
    outcome: Callable[[CliRun], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if pairs is not None:
        (tmp_path / "pairs.jsonl").write_bytes(pairs)
    monkeypatch.setattr(cli_align, "build_squad", fake_build_squad(fake))
    monkeypatch.setattr(aligners.server, "run", refuse_to_serve)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    monkeypatch.setattr(sys, "argv", ["aligners", *argv])
    code = run_cli(cli_app)
    captured = capsys.readouterr()
    outcome(CliRun(code, captured.out, captured.err, tmp_path))


# == 5. the aligning proxy and the model server =================================================


class FailingUpstream(Upstream):
    """An upstream model that fails with ``error`` (a server down, a request it cannot take)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def acomplete(self, messages: list[dict[str, str]], config: GenerationConfig) -> Any:
        raise self.error


def proxy(
    answer: str = FINE,
    score: Callable[[str, str], Any] = flags_harm,
    backend: GenerationBackend | None = None,
    upstream: Upstream | None = None,
    **settings: Any,
) -> Any:
    """The aligning proxy: the known-score squad after an upstream that answers ``answer``."""
    return create_app(
        ProxySettings(warmup=False, **settings),
        squad=squad(backend, score),
        upstream=upstream or ConstantBackend(answer),
    )


def model_server(**settings: Any) -> Any:
    """``aligners serve --plain`` over a backend that always writes FINE, served as ``m``."""
    options = ModelServerSettings(model="m", served_model_name="m", warmup=False, **settings)
    return create_model_app(ConstantBackend(FINE), options)


#: A TestClient response (an httpx-style Response).
Reply = Any


def send(
    app: Any,
    body: Any = None,
    *,
    raw: bytes | None = None,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request over ASGI; a crash is a 500 response, not an exception in the test."""
    client = TestClient(app, raise_server_exceptions=False)
    if method == "GET":
        return client.get(path, headers=headers)
    if raw is not None:
        raw_headers = {"content-type": "application/json", **(headers or {})}
        return client.post(path, content=raw, headers=raw_headers)
    return client.post(path, json=body, headers=headers)


def chat_body(content: Any = QUESTION, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **fields}


@dataclass(frozen=True)
class Rejected:
    """An OpenAI-style error: ``status``, a JSON body whose message matches ``message``."""

    status: int
    message: str
    param: str | None = None

    def __call__(self, response: Reply) -> None:
        assert response.status_code == self.status, response.text
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = response.json()["error"]
        assert re.search(self.message, error["message"]), error
        assert error["type"]
        if self.param is not None:
            assert error["param"] == self.param, error


def sse_events(text: str) -> list[dict[str, Any]]:
    lines = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert lines and lines[-1] == "[DONE]", text  # the stream ended properly
    return [json.loads(line) for line in lines[:-1]]


@dataclass(frozen=True)
class Answered:
    """HTTP 200 with the answer ``content`` handed back and its record saying why."""

    content: str
    reason: str
    action: str = "failed"
    stream: bool = False

    def __call__(self, response: Reply) -> None:
        assert response.status_code == 200, response.text
        if self.stream:
            events = sse_events(response.text)
            content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
            record = events[-1][METADATA_KEY]
        else:
            body = response.json()
            content, record = body["choices"][0]["message"]["content"], body[METADATA_KEY]
        assert content == self.content, (content, record)
        assert record["action"] == self.action, record
        why = " ".join(record.get("failures") or []) + " " + (record.get("skipped_reason") or "")
        assert re.search(self.reason, why), record


@dataclass(frozen=True)
class Either:
    """One of two clear outcomes (a defect whose fix may refuse the input or keep the answer)."""

    first: Callable[[Reply], None]
    second: Callable[[Reply], None]

    def __call__(self, response: Reply) -> None:
        try:
            self.first(response)
        except AssertionError:
            self.second(response)


def answer_survives(original: str) -> Callable[[Reply], None]:
    """HTTP 200 in JSON whose answer is ``original`` (its lone surrogate kept or replaced)."""

    def check(response: Reply) -> None:
        assert response.status_code == 200, response.text
        content = response.json()["choices"][0]["message"]["content"]
        assert content in (original, original.replace("\udcff", "\ufffd")), content

    return check


INVALID = "invalid request: "
USER_MESSAGE = {"role": "user", "content": QUESTION}
TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
}
TOOL_RESULT = {"role": "tool", "content": "42", "tool_call_id": "c1"}
TOO_MANY_STOPS = ["x"] * 17


SERVER_CASES = [
    # -- bodies that are not a chat completion request
    case(
        "body-not-json",
        lambda: send(proxy(), raw=b"not json"),
        Rejected(400, "request body is not valid JSON"),
    ),
    case(
        "body-empty",
        lambda: send(proxy(), raw=b""),
        Rejected(400, "request body is empty; send a JSON object"),
    ),
    case(
        "body-json-array",
        lambda: send(proxy(), []),
        Rejected(400, "must be a JSON object, got list"),
    ),
    case(
        "body-json-string",
        lambda: send(proxy(), "hi"),
        Rejected(400, "must be a JSON object, got str"),
    ),
    case(
        "body-utf16-garbage",
        lambda: send(proxy(), raw=b"\xff\xfe\x00"),
        Rejected(400, "request body is not valid JSON"),
    ),
    case(
        "body-latin1-byte",
        lambda: send(proxy(), raw=b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'),
        Rejected(400, "not valid JSON: 'utf-8' codec can't decode byte 0xe9"),
    ),
    case(
        "body-50000-nested-brackets",
        lambda: send(proxy(), raw=b"[" * 50_000),
        Rejected(400, "request body nests JSON deeper than this server's limit of 64 levels"),
    ),
    case(
        "body-nested-brackets-closed",
        lambda: send(proxy(), raw=b"[" * 50_000 + b"]" * 50_000),
        Rejected(400, "nests JSON deeper than this server's limit of 64 levels"),
    ),
    case(
        "body-nested-100-levels-in-a-field",
        lambda: send(proxy(), raw=b'{"messages": [], "x": ' + b"[" * 100 + b"]" * 100 + b"}"),
        Rejected(400, "nests JSON deeper than this server's limit of 64 levels"),
    ),
    case(
        "model-server-body-50000-nested-objects",
        lambda: send(model_server(), raw=b'{"a": ' * 50_000),
        Rejected(400, "nests JSON deeper than this server's limit of 64 levels"),
    ),
    case(
        "body-too-large",
        lambda: send(proxy(max_request_bytes=2000), chat_body("x" * 5000)),
        Rejected(413, r"request body is \d+ bytes; the limit is 2000 bytes"),
    ),
    case(
        "messages-missing",
        lambda: send(proxy(), {}),
        Rejected(400, INVALID + "messages: Field required"),
    ),
    case(
        "messages-empty",
        lambda: send(proxy(), {"messages": []}),
        Rejected(400, INVALID + "messages: List should have at least 1 item"),
    ),
    case(
        "messages-a-string",
        lambda: send(proxy(), {"messages": "hi"}),
        Rejected(400, INVALID + "messages: Input should be a valid list"),
    ),
    case(
        "message-a-string",
        lambda: send(proxy(), {"messages": ["hi"]}),
        Rejected(400, INVALID + "messages.0: Input should be a valid dictionary"),
    ),
    case(
        "role-unknown",
        lambda: send(proxy(), {"messages": [{"role": "wizard", "content": "hi"}]}),
        Rejected(400, INVALID + "messages.0.role: Input should be 'system'"),
    ),
    case(
        "role-missing",
        lambda: send(proxy(), {"messages": [{"content": "hi"}]}),
        Rejected(400, INVALID + "messages.0.role: Field required"),
    ),
    case(
        "only-a-tool-message",
        lambda: send(proxy(), {"messages": [TOOL_RESULT]}),
        Rejected(
            400,
            r"messages\[0\] has role 'tool' but does not follow an assistant message with "
            "'tool_calls'",
            param="messages.0.role",
        ),
    ),
    case(
        "tool-message-after-a-user-message",
        lambda: send(proxy(), {"messages": [USER_MESSAGE, TOOL_RESULT]}),
        Rejected(400, r"messages\[1\] has role 'tool'", param="messages.1.role"),
    ),
    case(
        "tool-message-after-an-assistant-without-tool-calls",
        lambda: send(
            proxy(),
            {"messages": [USER_MESSAGE, {"role": "assistant", "content": "ok"}, TOOL_RESULT]},
        ),
        Rejected(400, r"messages\[2\] has role 'tool'", param="messages.2.role"),
    ),
    case(
        "model-server-only-a-tool-message",
        lambda: send(model_server(), {"messages": [TOOL_RESULT]}),
        Rejected(400, r"messages\[0\] has role 'tool'", param="messages.0.role"),
    ),
    case(
        "tool-results-answering-a-tool-call",
        lambda: send(proxy(), {"messages": [USER_MESSAGE, TOOL_CALL, TOOL_RESULT, TOOL_RESULT]}),
        Answered(FINE, "", action="passed"),
    ),
    case(
        "content-int",
        lambda: send(proxy(), chat_body(42)),
        Rejected(400, INVALID + "messages.0.content.str: Input should be a valid string"),
    ),
    case(
        "content-image-part",
        lambda: send(proxy(), chat_body([{"type": "image_url", "image_url": {"url": "x"}}])),
        Rejected(400, "only text message content is supported, got a 'image_url' part"),
    ),
    case(
        "content-list-of-str",
        lambda: send(proxy(), chat_body(["hi"])),
        Rejected(
            400, r"messages.0.content.list\[dict\[str,any\]\].0: Input should be a valid dictionary"
        ),
    ),
    case(
        "content-text-part-not-str",
        lambda: send(proxy(), chat_body([{"type": "text", "text": 5}])),
        Rejected(400, "'text'.*(str|string)|(str|string).*'text'"),
    ),
    # -- sampling fields
    case(
        "max-tokens-zero",
        lambda: send(proxy(), chat_body(max_tokens=0)),
        Rejected(400, INVALID + "max_tokens: Input should be greater than 0"),
    ),
    case(
        "max-tokens-negative",
        lambda: send(proxy(), chat_body(max_tokens=-1)),
        Rejected(400, "max_tokens: Input should be greater than 0"),
    ),
    case(
        "max-tokens-text",
        lambda: send(proxy(), chat_body(max_tokens="many")),
        Rejected(400, "max_tokens: Input should be a valid integer"),
    ),
    case(
        "max-tokens-fraction",
        lambda: send(proxy(), chat_body(max_tokens=2.5)),
        Rejected(400, "max_tokens: Input should be a valid integer"),
    ),
    case(
        "max-tokens-true",
        lambda: send(proxy(), chat_body(max_tokens=True)),
        Rejected(400, INVALID + "max_tokens: Input should be a valid integer"),
    ),
    case(
        "max-tokens-numeric-string",
        lambda: send(proxy(), chat_body(max_tokens="64")),
        Rejected(400, INVALID + "max_tokens: Input should be a valid integer"),
    ),
    case(
        "max-completion-tokens-true",
        lambda: send(proxy(), chat_body(max_completion_tokens=True)),
        Rejected(400, INVALID + "max_completion_tokens: Input should be a valid integer"),
    ),
    case(
        "n-true",
        lambda: send(proxy(), chat_body(n=True)),
        Rejected(400, INVALID + "n: Input should be a valid integer"),
    ),
    case(
        "model-server-max-tokens-true",
        lambda: send(model_server(), chat_body(max_tokens=True)),
        Rejected(400, INVALID + "max_tokens: Input should be a valid integer"),
    ),
    case(
        "max-tokens-over-limit",
        lambda: send(proxy(), chat_body(max_tokens=10**6)),
        Rejected(400, "max_tokens=1000000 exceeds this server's limit of 4096", param="max_tokens"),
    ),
    case(
        "max-completion-tokens-over-limit",
        lambda: send(proxy(max_tokens_limit=64), chat_body(max_completion_tokens=65)),
        Rejected(400, "max_tokens=65 exceeds this server's limit of 64", param="max_tokens"),
    ),
    case(
        "temperature-five",
        lambda: send(proxy(), chat_body(temperature=5)),
        Rejected(400, "temperature: Input should be less than or equal to 2"),
    ),
    case(
        "temperature-nan",
        lambda: send(
            proxy(), raw=b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
        ),
        Rejected(400, "temperature"),
    ),
    case(
        "n-two",
        lambda: send(proxy(), chat_body(n=2)),
        Rejected(400, r"n=2 is not supported; ask for one choice \(n=1\)", param="n"),
    ),
    case(
        "n-zero",
        lambda: send(proxy(), chat_body(n=0)),
        Rejected(400, "n: Input should be greater than or equal to 1"),
    ),
    case(
        "tools",
        lambda: send(proxy(), chat_body(tools=[{"type": "function", "function": {"name": "f"}}])),
        Rejected(400, "'tools' is not supported by this server", param="tools"),
    ),
    case(
        "logprobs",
        lambda: send(proxy(), chat_body(logprobs=True)),
        Rejected(400, "logprobs and best_of are not supported"),
    ),
    case(
        "seventeen-stop-strings",
        lambda: send(proxy(), chat_body(stop=TOO_MANY_STOPS)),
        Rejected(400, "stop: Value error, at most 16 stop strings"),
    ),
    case(
        "stop-int",
        lambda: send(proxy(), chat_body(stop=5)),
        Rejected(400, "stop.str: Input should be a valid string"),
    ),
    case(
        "stream-a-list",
        lambda: send(proxy(), chat_body(stream=[1])),
        Rejected(400, "stream: Input should be a valid boolean"),
    ),
    # -- per-request squad options
    case(
        "aligners-unknown-field",
        lambda: send(proxy(), chat_body(aligners={"criterion": "ethical"})),
        Rejected(400, "aligners.criterion: Extra inputs are not permitted"),
    ),
    case(
        "aligners-a-string",
        lambda: send(proxy(), chat_body(aligners="ethical")),
        Rejected(400, "aligners: Input should be a valid dictionary"),
    ),
    case(
        "aligners-threshold-above-one",
        lambda: send(proxy(), chat_body(aligners={"threshold": 1.5})),
        Rejected(400, r"aligners.threshold: Value error, threshold must be in \[0, 1\], got 1.5"),
    ),
    case(
        "aligners-threshold-nan",
        lambda: send(
            proxy(),
            raw=b'{"messages": [{"role": "user", "content": "hi"}], '
            b'"aligners": {"threshold": NaN}}',
        ),
        Rejected(400, "aligners.threshold"),
    ),
    case(
        "aligners-threshold-infinity",
        lambda: send(
            proxy(),
            raw=b'{"messages": [{"role": "user", "content": "hi"}], '
            b'"aligners": {"threshold": -Infinity}}',
        ),
        Rejected(400, "aligners.threshold"),
    ),
    case(
        "aligners-unknown-on-flag",
        lambda: send(proxy(), chat_body(aligners={"on_flag": "explode"})),
        Rejected(400, "aligners.on_flag: Input should be 'rewrite'"),
    ),
    case(
        "aligners-blank-blocked-message",
        lambda: send(proxy(), chat_body(aligners={"blocked_message": "  "})),
        Rejected(400, "aligners.blocked_message: Value error, blocked_message must have text"),
    ),
    case(
        "aligners-empty-blocked-message",
        lambda: send(proxy(), chat_body(aligners={"blocked_message": ""})),
        Rejected(400, "aligners.blocked_message: Value error, blocked_message must have text"),
    ),
    case(
        "aligners-unknown-criterion",
        lambda: send(proxy(), chat_body(aligners={"criteria": ["ethicks"]})),
        Rejected(400, r"criteria \['ethicks'\] are not in this squad", param="aligners.criteria"),
    ),
    case(
        "aligners-no-criteria",
        lambda: send(proxy(), chat_body(aligners={"criteria": []})),
        Rejected(400, r"criteria names no criterion \(got \[\]\)", param="aligners.criteria"),
    ),
    case(
        "aligners-criteria-commas",
        lambda: send(proxy(), chat_body(aligners={"criteria": " , "})),
        Rejected(400, "criteria names no criterion", param="aligners.criteria"),
    ),
    case(
        "aligners-criteria-int",
        lambda: send(proxy(), chat_body(aligners={"criteria": 5})),
        Rejected(400, "aligners.criteria"),
    ),
    case(
        "aligners-request-threshold-two",
        lambda: send(proxy(), chat_body(aligners={"request_threshold": 2})),
        Rejected(
            400, r"aligners.request_threshold: Value error, request_threshold must be in \[0, 1\]"
        ),
    ),
    case(
        "aligners-check-only-maybe",
        lambda: send(proxy(), chat_body(aligners={"check_only": "maybe"})),
        Rejected(400, "aligners.check_only: Value error, check_only must be true or false"),
    ),
    case(
        "criteria-header-unknown",
        lambda: send(proxy(), chat_body(), headers={"X-Aligners-Criteria": "ethicks"}),
        Rejected(400, r"criteria \['ethicks'\] are not in this squad", param="aligners.criteria"),
    ),
    case(
        "criteria-header-blank",
        lambda: send(proxy(), chat_body(), headers={"X-Aligners-Criteria": " , "}),
        Rejected(400, "criteria names no criterion", param="aligners.criteria"),
    ),
    # -- routes and keys
    case(
        "unknown-path",
        lambda: send(proxy(), chat_body(), path="/v1/chat/complete"),
        Rejected(404, "Not Found: POST /v1/chat/complete"),
    ),
    case(
        "wrong-method",
        lambda: send(proxy(), method="GET"),
        Rejected(405, "Method Not Allowed: GET /v1/chat/completions"),
    ),
    case(
        "api-key-missing",
        lambda: send(proxy(api_key="s3cret"), chat_body()),
        Rejected(401, "missing API key: send 'Authorization: Bearer <key>'"),
    ),
    case(
        "api-key-wrong",
        lambda: send(
            proxy(api_key="s3cret"), chat_body(), headers={"Authorization": "Bearer nope"}
        ),
        Rejected(401, "invalid API key"),
    ),
    case(
        "api-key-basic-scheme",
        lambda: send(
            proxy(api_key="s3cret"), chat_body(), headers={"Authorization": "Basic s3cret"}
        ),
        Rejected(401, "missing API key"),
    ),
    case(
        "api-key-missing-on-models",
        lambda: send(proxy(api_key="s3cret"), path="/v1/models", method="GET"),
        Rejected(401, "missing API key"),
    ),
    # -- upstream and squad failures
    case(
        "upstream-down",
        lambda: send(
            proxy(upstream=FailingUpstream(GenerationError("connection refused"))), chat_body()
        ),
        Rejected(502, "upstream model failed: connection refused"),
    ),
    case(
        "upstream-refuses-request",
        lambda: send(
            proxy(upstream=FailingUpstream(ValueError("prompt over the context"))), chat_body()
        ),
        Rejected(400, "upstream model cannot take this request: prompt over the context"),
    ),
    case(
        "inspector-down-on-error-raise",
        lambda: send(proxy(score=inspector_down, on_error="raise"), chat_body()),
        Rejected(500, r"squad failed \(RuntimeError: inspector service down\)"),
    ),
    case(
        "upstream-empty-answer",
        lambda: send(proxy(""), chat_body()),
        Answered("", "the upstream answer is empty", action="skipped"),
    ),
    case(
        "upstream-whitespace-answer",
        lambda: send(proxy("  \n"), chat_body()),
        Answered("  \n", "the upstream answer is empty", action="skipped"),
    ),
    case(
        "upstream-zero-width-answer",
        lambda: send(proxy(ZERO_WIDTH), chat_body()),
        Answered(ZERO_WIDTH, "the upstream answer is empty", action="skipped"),
    ),
    case(
        "upstream-zero-width-answer-stream",
        lambda: send(proxy(ZERO_WIDTH), chat_body(stream=True)),
        Answered(ZERO_WIDTH, "the upstream answer is empty", action="skipped", stream=True),
    ),
    case(
        "upstream-empty-answer-stream",
        lambda: send(proxy(""), chat_body(stream=True)),
        Answered("", "the upstream answer is empty", action="skipped", stream=True),
    ),
    case(
        "inspector-down-return-original",
        lambda: send(proxy(HARMFUL, score=inspector_down), chat_body()),
        Answered(
            HARMFUL,
            r"squad failed \(RuntimeError: inspector service down\); kept the original answer",
        ),
    ),
    case(
        "inspector-down-stream-under-raise",
        lambda: send(
            proxy(HARMFUL, score=inspector_down, on_error="raise"), chat_body(stream=True)
        ),
        Answered(HARMFUL, "inspector service down", stream=True),
    ),
    case(
        "broken-aligner",
        lambda: send(proxy(HARMFUL, backend=BrokenBackend()), chat_body()),
        Answered(HARMFUL, r"aligner failed \(ConnectionError", action="flagged"),
    ),
    case(
        "inspector-nan-return-original",
        lambda: send(proxy(HARMFUL, score=lambda q, a: math.nan), chat_body()),
        Answered(HARMFUL, r"outside \[0, 1\] for answer 0: nan"),
    ),
    case(
        "upstream-surrogate-answer",
        lambda: send(proxy(SURROGATE), chat_body()),
        answer_survives(SURROGATE),
    ),
    case(
        "stream-flag-is-a-string",
        lambda: send(proxy(), chat_body(stream="yes")),
        Rejected(400, "stream"),
    ),
    case(
        "user-message-surrogate",
        lambda: send(proxy(), raw=b'{"messages": [{"role": "user", "content": "hi \\udcff"}]}'),
        Either(
            Rejected(400, "surrogate|not valid Unicode"),
            Answered(FINE, "question is not valid Unicode text"),
        ),
    ),
    case(
        "user-message-surrogate-stream",
        lambda: send(
            proxy(),
            raw=b'{"messages": [{"role": "user", "content": "hi \\udcff"}], "stream": true}',
        ),
        Either(
            Rejected(400, "surrogate|not valid Unicode"),
            Answered(FINE, "question is not valid Unicode text", stream=True),
        ),
    ),
    case(
        "upstream-connection-error",
        lambda: send(
            proxy(upstream=FailingUpstream(ConnectionError("connection refused"))), chat_body()
        ),
        Rejected(502, "connection refused"),
    ),
    # -- the plain model server
    case(
        "model-server-unknown-model",
        lambda: send(model_server(), chat_body(model="gpt-nope")),
        Rejected(404, r"model 'gpt-nope' is not served here; available: \['m'\]", param="model"),
    ),
    case(
        "model-server-completions-unknown-model",
        lambda: send(model_server(), {"prompt": "a", "model": "x"}, path="/v1/completions"),
        Rejected(404, "model 'x' is not served here", param="model"),
    ),
    case(
        "model-server-empty-prompt-list",
        lambda: send(model_server(), {"prompt": []}, path="/v1/completions"),
        Rejected(400, "prompt: Value error, prompt list is empty"),
    ),
    case(
        "model-server-missing-prompt",
        lambda: send(model_server(), {}, path="/v1/completions"),
        Rejected(400, "prompt: Field required"),
    ),
    case(
        "model-server-prompt-int",
        lambda: send(model_server(), {"prompt": 42}, path="/v1/completions"),
        Rejected(400, "prompt.str: Input should be a valid string"),
    ),
    case(
        "model-server-token-ids-prompt",
        lambda: send(model_server(), {"prompt": [1, 2, 3]}, path="/v1/completions"),
        Rejected(400, r"prompt.list\[str\].0: Input should be a valid string"),
    ),
    case(
        "model-server-stream-two-prompts",
        lambda: send(
            model_server(), {"prompt": ["a", "b"], "stream": True}, path="/v1/completions"
        ),
        Rejected(400, "stream=true takes one prompt", param="prompt"),
    ),
    case(
        "model-server-no-classifier",
        lambda: send(model_server(), {"input": "a"}, path="/classify"),
        Rejected(404, r"this server has no classifier \(start it with --classifier\)"),
    ),
    case(
        "model-server-max-tokens-over-limit",
        lambda: send(model_server(max_tokens_limit=8), chat_body(max_tokens=9)),
        Rejected(400, "max_tokens=9 exceeds this server's limit of 8", param="max_tokens"),
    ),
    case(
        "model-server-empty-messages",
        lambda: send(model_server(), {"messages": []}),
        Rejected(400, "messages: List should have at least 1 item"),
    ),
    # -- settings: bad values fail at startup, naming the field
    case(
        "settings-threshold-two",
        lambda: ProxySettings(threshold=2),
        Raises(ValidationError, r"policy.threshold\s+Value error, threshold must be in \[0, 1\]"),
    ),
    case(
        "settings-on-error-keep",
        lambda: ProxySettings(on_error="keep"),
        Raises(ValidationError, "on_error"),
    ),
    case(
        "settings-zero-batch",
        lambda: ProxySettings(max_batch_size=0),
        Raises(ValidationError, "max_batch_size"),
    ),
    case(
        "settings-zero-body-limit",
        lambda: ProxySettings(max_request_bytes=0),
        Raises(ValidationError, "max_request_bytes"),
    ),
    case(
        "settings-zero-timeout",
        lambda: ProxySettings(request_timeout=0),
        Raises(ValidationError, "request_timeout"),
    ),
    case(
        "settings-blank-blocked-message",
        lambda: ProxySettings(blocked_message=" "),
        Raises(ValidationError, "blocked_message must have text"),
    ),
    case(
        "settings-upstream-without-model",
        lambda: ProxySettings(upstream_url="http://gpu:8000/v1"),
        Raises(ValidationError, "upstream_model is required with upstream_url"),
    ),
    case(
        "settings-upstream-not-http",
        lambda: ProxySettings(upstream_url="gpu:8000", upstream_model="m"),
        Raises(ValidationError, "upstream_url must be an http\\(s\\) URL"),
    ),
    case(
        "settings-unknown-field",
        lambda: ProxySettings(upstream="http://gpu"),
        Raises(ValidationError, r"upstream\s+Extra inputs are not permitted"),
    ),
    case(
        "model-server-settings-unknown-field",
        lambda: ModelServerSettings(criteria=["ethical"]),
        Raises(ValidationError, r"criteria\s+Extra inputs are not permitted"),
    ),
]


@pytest.mark.parametrize(("action", "outcome"), SERVER_CASES)
def test_server(action: Callable[[], Any], outcome: Outcome) -> None:
    verify(action, outcome)
