"""The squad's policy: the one declaration of what happens to a flagged or failing answer.

:class:`SquadPolicy` holds every policy option once, with its default and its help text:
``on_flag``, ``on_error``, the flag and block thresholds (one number or one per criterion),
``blocked_message``, ``check_only``, the request check (``check_request``,
``request_threshold``) and ``on_token_limit``. Every surface composes it: ``Squad(policy=...)``,
LangChain's ``AlignerSquad(policy=...)`` and its middleware, the LlamaIndex engines and
postprocessor, the proxy's ``ProxySettings`` and per-request options, and the CLI flags
(``aligners.cli.options`` derives them from these fields). The flat keywords those surfaces
also take (``on_flag="block"``) are sugar for :meth:`SquadPolicy.merge`.

Merging works as transformers merges a ``GenerationConfig``: :meth:`SquadPolicy.merge` returns
a new, validated policy in which the fields the other policy set explicitly, then the keyword
overrides that are not None, replace this one's; a bad value is a ``ValueError`` naming the
field (a pydantic ``ValidationError``, as for every settings object of the project). A policy
remembers which fields were set (``explicit()``), so applying a policy to a
pre-built squad changes only what it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationInfo,
)

from aligners.inspector.request import RequestInspector
from aligners.validation import warn_deprecated

#: What the squad does with an answer an inspector flags.
OnFlag = Literal["rewrite", "block", "raise", "rewrite_or_block"]
#: What a squad does when it cannot process an answer (a bad input, a model that fails).
OnError = Literal["raise", "return_original"]
#: What a squad does with a rewrite that stopped at ``max_new_tokens`` before it ended.
OnTokenLimit = Literal["keep_previous", "accept"]

#: What a blocked answer becomes unless ``blocked_message`` says otherwise.
DEFAULT_BLOCKED_MESSAGE = (
    "I can't help with that. The answer to this request was withheld because it did not pass "
    "a safety check."
)


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("blocked_message must have text (it replaces a blocked answer)")
    return value


#: A blocked message: any text but blank (the squad's and the server's settings share it).
BlockedMessage = Annotated[str, AfterValidator(_has_text)]


def _check_unit(value: Any, where: str) -> float:
    """A number in [0, 1] (a bool, a string such as "0.5" or NaN is a mistake, not a score)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{where} must be a number in [0, 1], got {type(value).__name__} {value!r}"
        )
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{where} must be in [0, 1], got {value}")
    return float(value)


def _unit(value: Any, info: ValidationInfo) -> float | None:
    return None if value is None else _check_unit(value, info.field_name or "threshold")


def _thresholds(value: Any, info: ValidationInfo) -> Any:
    """One number in [0, 1], or ``{criterion: number}``; the message names a bad entry."""
    field = info.field_name or "threshold"
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key, number in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"{field}: criterion names must be str, got {type(key).__name__} {key!r}"
                )
            _check_unit(number, f"{field}[{key!r}]")
        return {key: float(number) for key, number in value.items()}
    return _check_unit(value, field)


def _string_flag(value: Any, field: str | None) -> Any:
    """``"true"``/``"false"`` (any case) as the bool, with a deprecation warning (earlier
    releases took them, as pydantic's lax bool does); anything else as it is."""
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in ("true", "false"):
        return value
    warn_deprecated(
        f"{field}={value!r}: a string for a flag is deprecated and will be an error in the "
        f"next release; pass {word.capitalize()}"
    )
    return word == "true"


def numeric_string(value: Any, field: str) -> Any:
    """A threshold given as a numeric string (``"0.5"``), as the adapters' and the server's
    settings took it before this release: the number, with a deprecation warning; anything
    else as it is (the engine never took strings)."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    warn_deprecated(
        f"{field}={value!r}: a threshold as a string is deprecated and will be an error in the "
        f"next release; pass the number {number}"
    )
    return number


def _flat_thresholds(value: Any, info: ValidationInfo) -> Any:
    field = info.field_name or "threshold"
    if isinstance(value, Mapping):
        value = {key: numeric_string(number, f"{field}[{key!r}]") for key, number in value.items()}
    return _thresholds(numeric_string(value, field), info)


def _a_bool(value: Any, info: ValidationInfo) -> Any:
    value = _string_flag(value, info.field_name)
    if not isinstance(value, bool):
        raise ValueError(
            f"{info.field_name} must be true or false, got {type(value).__name__} {value!r}"
        )
    return value


def _a_check(value: Any, info: ValidationInfo) -> Any:
    value = _string_flag(value, info.field_name)
    if not isinstance(value, (bool, RequestInspector)):
        # A TypeError (it passes through pydantic), as resolve_request_inspector raises.
        raise TypeError(
            f"{info.field_name} must be True, False or a RequestInspector, got "
            f"{type(value).__name__} {value!r}"
        )
    return value


#: A score threshold: a number in [0, 1].
Unit = Annotated[float, BeforeValidator(_unit)]
#: One threshold for every criterion, or one per criterion.
Thresholds = Annotated[float | dict[str, float], BeforeValidator(_thresholds)]
#: :data:`Thresholds` for a surface's flat keywords, which took numeric strings before this
#: release (pydantic's lax float): ``"0.5"`` still works there, with a deprecation warning.
FlatThresholds = Annotated[float | dict[str, float], BeforeValidator(_flat_thresholds)]
#: A flag: a real bool (JSON's "yes" or 1 is a mistake).
Flag = Annotated[bool, BeforeValidator(_a_bool)]
#: The request check: off, on (the shipped request inspector), or this inspector.
RequestCheckOption = Annotated[bool | InstanceOf[RequestInspector], BeforeValidator(_a_check)]

#: Defaults of a surface that differ from :class:`SquadPolicy`'s, and why (docs/engine.md,
#: "The policy", states each with its reason; a test keeps the two in step). Every other option
#: has the field's default on every surface.
SURFACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "engine": {},
    "cli": {},
    # Always set on its squad (also on a pre-built one given as squad=...): a chain fails loudly.
    "langchain": {"on_error": "raise"},
    # A query engine or postprocessor serves end users: a failure must not cost the answer.
    "llamaindex": {"on_error": "return_original"},
    # A server must answer every request it can: a failure costs the alignment, not the reply.
    "server": {"on_error": "return_original"},
}


class SquadPolicy(BaseModel):
    """What a squad does with flagged, failing and cut answers, and with harmful requests.

    ``None`` in ``threshold``, ``block_threshold``, ``request_threshold`` and ``on_token_limit``
    keeps the models' own values (each inspector's shipped operating point, each aligner's
    setting). See :meth:`merge` to combine policies and keyword overrides.

    Example:
        >>> strict = SquadPolicy(on_flag="block", threshold={"ethical": 0.4})
        >>> strict.merge(on_error="return_original").on_error
        'return_original'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_flag: OnFlag = Field(
        default="rewrite",
        description="What happens to a flagged answer: rewrite (the aligners fix it), block "
        "(replaced by blocked_message), raise (AlignmentViolation), rewrite_or_block (rewrite, "
        "re-score, block what still fails).",
    )
    on_error: OnError = Field(
        default="raise",
        description="When an answer cannot be processed (a bad item, a model that fails): "
        "raise, or return_original (it comes back as it was with the failure in its record; "
        "the rest of the batch is aligned). A flagged answer under on_flag=raise is a verdict, "
        "not a failure, and always raises.",
    )
    threshold: Thresholds | None = Field(
        default=None,
        description="Inspector score under which an answer is flagged and its aligner runs: "
        "one number or one per criterion (default: each inspector's shipped operating point, "
        "else 0.5).",
    )
    block_threshold: Thresholds | None = Field(
        default=None,
        description="Block an answer the aligners did not fix when its inspector still scores "
        "it under this: one number or one per criterion (default: each inspector's shipped "
        "block threshold; 0 turns blocking off).",
    )
    blocked_message: BlockedMessage = Field(
        default=DEFAULT_BLOCKED_MESSAGE,
        description="The text a blocked answer (or a turned-away request) is replaced with.",
    )
    check_only: Flag = Field(
        default=False, description="Only score answers; never rewrite or block them."
    )
    check_request: RequestCheckOption = Field(
        default=False,
        description="Check the request with the request inspector (True: the shipped one, or "
        "a RequestInspector) before the model runs; a request it turns away gets "
        "blocked_message and no answer is generated.",
    )
    request_threshold: Unit | None = Field(
        default=None,
        description="Requests scoring under it are turned away (default: the request "
        "inspector's own).",
    )
    on_token_limit: OnTokenLimit | None = Field(
        default=None,
        description="A rewrite that stops at max_new_tokens before it ends: keep_previous "
        "(keep the text it was given, record why) or accept (take the cut rewrite, recorded as "
        "hit_token_limit) (default: each aligner's own setting, keep_previous).",
    )

    @classmethod
    def for_surface(cls, surface: str, policy: SquadPolicy | None = None) -> SquadPolicy:
        """The default policy of ``surface`` (:data:`SURFACE_DEFAULTS`) with ``policy`` merged
        onto it."""
        return cls(**SURFACE_DEFAULTS[surface]).merge(policy)

    @classmethod
    def describe(cls, name: str, none: str | None = None) -> str:
        """The help text of field ``name`` (for a surface's flat keyword or a CLI flag);
        ``none`` says what None means there."""
        text = cls.model_fields[name].description or ""
        return f"{text} None: {none}." if none else text

    def explicit(self) -> dict[str, Any]:
        """The fields set explicitly (by a constructor or a merge), with their values."""
        return {name: getattr(self, name) for name in self.model_fields_set}

    def merge(
        self, other: SquadPolicy | Mapping[str, Any] | None = None, /, **overrides: Any
    ) -> SquadPolicy:
        """A new, validated policy: this one, then what ``other`` sets (a policy's explicit
        fields, a mapping's values), then ``overrides``; None in a mapping or an override
        leaves a field as it is.

        Raises:
            pydantic.ValidationError: (a ``ValueError``) naming each bad or unknown field.
        """
        data = self.explicit()
        if isinstance(other, SquadPolicy):
            data |= other.explicit()
        elif other is not None:
            data |= {name: value for name, value in other.items() if value is not None}
        data |= {name: value for name, value in overrides.items() if value is not None}
        return SquadPolicy(**data)

    def threshold_for(self, criterion: str) -> float | None:
        """This policy's flag threshold for ``criterion`` (None: the inspector's own)."""
        return _one(self.threshold, criterion)

    def block_threshold_for(self, criterion: str) -> float | None:
        """This policy's block threshold for ``criterion`` (None: the inspector's own)."""
        return _one(self.block_threshold, criterion)

    @property
    def may_block(self) -> bool:
        """Whether the policy itself blocks flagged answers (``block``, ``rewrite_or_block``)."""
        return not self.check_only and self.on_flag in ("block", "rewrite_or_block")


def _one(value: float | dict[str, float] | None, criterion: str) -> float | None:
    return value.get(criterion) if isinstance(value, dict) else value


#: The policy's field names, in declaration order (CLI and docs tables iterate over them).
POLICY_FIELDS: tuple[str, ...] = tuple(SquadPolicy.model_fields)
#: The words a policy field takes, for those that take one of a few.
POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "on_flag": get_args(OnFlag),
    "on_error": get_args(OnError),
    "on_token_limit": get_args(OnTokenLimit),
}


def describe(name: str, none: str | None = None) -> str:
    """:meth:`SquadPolicy.describe`."""
    return SquadPolicy.describe(name, none)


def given_fields(model: BaseModel, names: Iterable[str]) -> dict[str, Any]:
    """The fields among ``names`` that ``model`` was given (pydantic's ``model_fields_set``),
    with their values: a surface's flat policy keywords read their old defaults back, but only
    those passed are merged onto its policy, so an untouched default never overrides a
    ``policy=`` (nor a given squad's own)."""
    return {name: getattr(model, name) for name in names if name in model.model_fields_set}


def fold_policy(data: Any, surface: str) -> Any:
    """For a settings model's ``mode="before"`` validator: its flat policy keywords (e.g.
    ``on_flag="block"``) moved into its ``policy`` field, over ``surface``'s defaults and the
    fields a given ``policy`` sets, so that pydantic validates them there (errors read
    ``policy.on_flag``)."""
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    given = data.pop("policy", None)
    folded: dict[str, Any] = dict(SURFACE_DEFAULTS[surface])
    if isinstance(given, SquadPolicy):
        folded |= given.explicit()
    elif isinstance(given, Mapping):
        folded |= dict(given)
    elif given is not None:
        raise TypeError(f"policy must be an aligners.SquadPolicy, got {type(given).__name__}")
    folded |= {k: data.pop(k) for k in POLICY_FIELDS if k in data and data[k] is not None}
    for name in ("threshold", "block_threshold", "request_threshold"):  # "0.5": deprecated
        if name in folded and not isinstance(folded[name], Mapping):
            folded[name] = numeric_string(folded[name], name)
    for name in POLICY_FIELDS:
        data.pop(name, None)  # an explicit None: the policy's own
    data["policy"] = folded
    return data
