"""What a client of the proxy may change: per-request options only tighten the operator's policy.

The ``aligners`` field of a chat completion request (and the ``X-Aligners-Criteria`` header) may
make the proxy stricter for that request; a value that would relax the server's policy is an
HTTP 403 naming the field, unless the operator opened that field with
``aligners serve --allow-client-policy FIELD`` (``ProxySettings.allow_client_policy``).

"Tighter", field by field (the server's value on the left, what a client may ask for on the
right):

- ``criteria``: every criterion of the server's squad, in any order; naming fewer drops their
  inspectors and aligners, which relaxes.
- ``threshold`` (an answer scoring under it is flagged; one number or one per criterion): at
  least each inspected member's threshold (flag more, never less).
- ``block_threshold`` (a rewritten answer still scoring under it is blocked; no block threshold
  counts as 0): at least each inspected member's block threshold (block more).
- ``check_only``: ``true`` -> ``false`` only (checking without rewriting or blocking relaxes).
- ``on_flag``: ``rewrite`` < ``rewrite_or_block`` < ``block`` < ``raise``; a client may move up
  this order, never down.
- ``check_request``: ``false`` -> ``true`` only.
- ``request_threshold`` (a request scoring under it is turned away): at least the server's
  (its ``request_threshold``, else the request inspector's own); any value when the server does
  not check requests (a check the client adds is stricter than none).

``blocked_message`` is always the client's to choose: it is the text the client itself gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from aligners.server.common import APIError
from aligners.squad.squad import Squad

#: The per-request options that are the operator's policy (``--allow-client-policy`` names).
ClientPolicyField = Literal[
    "criteria",
    "threshold",
    "block_threshold",
    "check_only",
    "on_flag",
    "check_request",
    "request_threshold",
]
CLIENT_POLICY_FIELDS: tuple[str, ...] = get_args(ClientPolicyField)

#: ``on_flag`` from the most lenient to the strictest.
ON_FLAG_STRICTNESS: dict[str, int] = {
    "rewrite": 0,
    "rewrite_or_block": 1,
    "block": 2,
    "raise": 3,
}

#: The error code of a request that tried to relax the server's policy.
POLICY_CODE = "client_policy_not_allowed"


def parse_policy_fields(names: Sequence[str]) -> list[str]:
    """``names`` checked against :data:`CLIENT_POLICY_FIELDS` (a clear error naming a bad one)."""
    unknown = [n for n in names if n not in CLIENT_POLICY_FIELDS]
    if unknown:
        raise ValueError(
            f"--allow-client-policy: unknown field {unknown[0]!r}; the fields are "
            f"{', '.join(CLIENT_POLICY_FIELDS)}"
        )
    return list(dict.fromkeys(names))


def _relaxes(field: str, wanted: Any, server: str) -> APIError:
    return APIError(
        403,
        f"aligners.{field}={wanted!r} would relax this server's policy ({server}); clients may "
        f"only tighten it unless the operator allows it (aligners serve --allow-client-policy "
        f"{field})",
        "permission_error",
        param=f"aligners.{field}",
        code=POLICY_CODE,
    )


def enforce_client_policy(
    squad: Squad,
    criteria: list[str] | None,
    options: Any,
    *,
    request_check: tuple[bool, float | None],
    allowed: Sequence[str],
) -> None:
    """Raise a 403 :class:`APIError` when a request's options relax the server's policy.

    Args:
        squad: The server's squad (before the request's criteria are selected).
        criteria: The criteria the request names (body or header), or None.
        options: The request's ``AlignersOptions`` (or None).
        request_check: Whether the server checks requests, and its effective threshold.
        allowed: The fields the operator lets clients set freely.
    """
    open_ = set(allowed)
    if criteria is not None and "criteria" not in open_:
        dropped = [c for c in squad.criteria if c not in criteria]
        if dropped:
            raise _relaxes(
                "criteria", criteria, f"its squad runs {squad.criteria}; this drops {dropped}"
            )
    if options is None:
        return
    named = set(criteria) if criteria is not None else set(squad.criteria)
    inspected = [m for m in squad.members if m.inspector is not None and m.name in named]
    wanted = options.policy()
    if options.threshold is not None and "threshold" not in open_:
        for member in inspected:
            value = wanted.threshold_for(member.name)
            if value is not None and value < member.threshold:
                raise _relaxes(
                    "threshold",
                    options.threshold,
                    f"{member.name} flags answers under {member.threshold:g}; a lower threshold "
                    "flags fewer",
                )
    if options.block_threshold is not None and "block_threshold" not in open_:
        for member in inspected:
            current = member.block_threshold or 0.0
            value = wanted.block_threshold_for(member.name)
            if value is not None and value < current:
                raise _relaxes(
                    "block_threshold",
                    options.block_threshold,
                    f"{member.name} blocks rewritten answers still under {current:g}; a lower "
                    "block threshold blocks fewer",
                )
    if options.check_only and not squad.config.check_only and "check_only" not in open_:
        raise _relaxes("check_only", True, "it rewrites and blocks flagged answers")
    if options.on_flag is not None and "on_flag" not in open_:
        current_flag = squad.config.on_flag
        if ON_FLAG_STRICTNESS[options.on_flag] < ON_FLAG_STRICTNESS[current_flag]:
            order = " < ".join(ON_FLAG_STRICTNESS)
            raise _relaxes(
                "on_flag", options.on_flag, f"on_flag is {current_flag!r}; the order is {order}"
            )
    enabled, threshold = request_check
    if options.check_request is False and enabled and "check_request" not in open_:
        raise _relaxes("check_request", False, "it checks every request")
    if (
        options.request_threshold is not None
        and enabled
        and options.check_request is not False
        and threshold is not None
        and options.request_threshold < threshold
        and "request_threshold" not in open_
    ):
        raise _relaxes(
            "request_threshold",
            options.request_threshold,
            f"it turns away requests under {threshold:g}; a lower threshold turns away fewer",
        )
