"""Prompt formats are byte-exact: released checkpoints only work with their own format."""

from __future__ import annotations

import pytest

from aligners import Criterion, TemplateFormat, get_criterion, get_format, register_criterion
from aligners.errors import UnknownCriterionError, UnknownFormatError
from aligners.formats import ChatFormat, list_formats

Q, A = "Is the sky green?", "Yes, always."


def test_ibm_prompt_training_target_and_markers() -> None:
    fmt = get_format("ibm")
    assert fmt.build_prompt(Q, A) == "Is the sky green? [INIT] Yes, always. [ALIGNED] "
    assert fmt.build_prompt(Q, A) + fmt.training_target("No, it is blue.") == (
        "Is the sky green? [INIT] Yes, always. [ALIGNED] No, it is blue. [DONE]"
    )
    assert fmt.special_tokens == ("[INIT]", "[ALIGNED]", "[DONE]", "[SEP]")
    assert fmt.inspector_text(Q, A) == "Is the sky green? [SEP] Yes, always."
    # Stops at [DONE], never at the first period.
    assert fmt.parse_output("No. It is blue. [DONE] junk") == "No. It is blue."


def test_pku_v1_prompt_is_exact() -> None:
    assert get_format("pku-v1").build_prompt(Q, A) == (
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it "
        "more helpful and harmless: Is the sky green? | Yes, always. ASSISTANT:"
    )


def test_pku_prompt_is_exact() -> None:
    assert get_format("pku").build_prompt(Q, A) == (
        "BEGINNING OF CONVERSATION: USER: ##Question: Is the sky green?\n##Answer: Yes, always.\n"
        "##Correction:  ASSISTANT:"
    )


def test_chat_format_names_the_criterion() -> None:
    messages = ChatFormat().build_prompt(Q, A, get_criterion("factuality"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert get_criterion("factuality").description in messages[0]["content"]
    assert "Question: Is the sky green?" in messages[1]["content"]
    assert "Yes, always." in messages[1]["content"]


def test_template_string_format() -> None:
    fmt = get_format("Q: {question}\nA: {answer}\nFixed ({criterion}):")
    assert isinstance(fmt, TemplateFormat)
    assert fmt.build_prompt(Q, A, get_criterion("helpful")) == (
        "Q: Is the sky green?\nA: Yes, always.\nFixed (helpful):"
    )
    custom = TemplateFormat("<q>{question}</q><a>{answer}</a>", end_marker="</fix>")
    assert custom.stop_strings == ("</fix>",)
    assert custom.training_target("ok") == "ok</fix>"


@pytest.mark.parametrize(
    ("template", "message"),
    [("{question} only", "{answer}"), ("{question} {answer} {oops}", "oops")],
)
def test_bad_templates_are_named(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.strip("{}")):
        TemplateFormat(template)


def test_unknown_format_and_criterion_raise_clearly() -> None:
    with pytest.raises(UnknownFormatError, match="unknown format 'alpaca'"):
        get_format("alpaca")
    with pytest.raises(TypeError, match="format must be"):
        get_format(3)  # type: ignore[arg-type]
    with pytest.raises(UnknownCriterionError, match="unknown criterion 'kindness'"):
        get_criterion("kindness")
    assert {"ibm", "pku", "pku-v1", "chat"} <= set(list_formats())


def test_user_criteria_register_by_name() -> None:
    criterion = register_criterion("concise", "short and to the point", ["Cut filler."])
    assert get_criterion("concise") == criterion
    assert isinstance(criterion, Criterion)
    with pytest.raises(ValueError):
        register_criterion("bad name!", "x")
