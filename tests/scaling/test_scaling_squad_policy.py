"""The proxy composes aligners.SquadPolicy: ``ProxySettings(policy=...)`` is what the flat
settings are, a squad given to create_app gets what the policy sets explicitly (thresholds
too), and per-request options are policy fields (one number or one per criterion), still
tighten-only. Against a real server on a thread."""

from __future__ import annotations

import pytest
from fault_server import ANSWER

from aligners import SquadPolicy
from aligners.server import ProxySettings
from tests.scaling.test_scaling_policies import HARMFUL, ORDINARY, REWRITE, proxy, upstream

__all__ = ["proxy", "upstream"]  # the fixtures this module uses


def test_flat_settings_are_sugar_for_the_policy() -> None:
    flat = ProxySettings(on_flag="block", threshold=0.3, check_request=True, warmup=False)
    given = ProxySettings(
        policy=SquadPolicy(on_flag="block", threshold=0.3, check_request=True), warmup=False
    )
    assert flat.policy == given.policy
    assert (flat.on_flag, flat.threshold, flat.check_request) == ("block", 0.3, True)
    assert flat.on_error == "return_original"  # the server's default (one table: engine.md)
    assert ProxySettings(policy=SquadPolicy(on_error="raise")).on_error == "raise"
    # a flat keyword wins over the policy's field
    assert ProxySettings(policy=SquadPolicy(on_flag="raise"), on_flag="block").on_flag == "block"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"policy": {"on_flag": "refuse"}}, "policy.on_flag"),
        ({"threshold": 2}, r"policy.threshold\s+Value error, threshold must be in \[0, 1\]"),
        ({"policy": SquadPolicy(), "check_only": "yes"}, "check_only must be true or false"),
    ],
)
def test_bad_policy_settings_name_the_field(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        ProxySettings(**settings)


def test_policy_and_flat_settings_serve_the_same_answers(proxy) -> None:
    flat = proxy(on_flag="block", blocked_message="Withheld.")
    policy = proxy(policy=SquadPolicy(on_flag="block", blocked_message="Withheld."))
    for question in (HARMFUL, ORDINARY):
        one, other = flat.chat(question), policy.chat(question)
        assert one.choices[0].message.content == other.choices[0].message.content
        assert one.model_extra["aligners"]["action"] == other.model_extra["aligners"]["action"]
    assert flat.chat(HARMFUL).choices[0].message.content == "Withheld."


def test_a_given_squad_gets_the_policys_thresholds(proxy) -> None:
    """create_app(settings, squad=...) used to drop the settings' thresholds."""
    # the squad flags under 0.5; the server's policy lowers it under the harmful answer's 0.1
    server = proxy(policy=SquadPolicy(threshold=0.05))
    reply = server.chat(HARMFUL)
    assert reply.choices[0].message.content == ANSWER
    assert reply.model_extra["aligners"]["thresholds"] == {"ethical": 0.05}
    assert server.chat(HARMFUL, threshold=0.5).choices[0].message.content == REWRITE


def test_per_request_thresholds_per_criterion_are_tighten_only(proxy) -> None:
    server = proxy()
    tighter = server.chat(HARMFUL, threshold={"ethical": 0.6})
    assert tighter.model_extra["aligners"]["thresholds"] == {"ethical": 0.6}
    response = server.post(
        {
            "messages": [{"role": "user", "content": HARMFUL}],
            "aligners": {"threshold": {"ethical": 0.2}},
        }
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["param"] == "aligners.threshold"
    unknown = server.post(
        {
            "messages": [{"role": "user", "content": HARMFUL}],
            "aligners": {"threshold": {"helpful": 0.9}},
        }
    )
    assert unknown.status_code == 400 and "helpful" in unknown.text
    strict_bool = server.post(
        {"messages": [{"role": "user", "content": HARMFUL}], "aligners": {"check_only": "yes"}}
    )
    assert strict_bool.status_code == 400 and "check_only" in strict_bool.text


def test_string_flags_still_work_with_a_deprecation_notice(proxy) -> None:
    """Earlier releases took "true"/"false" for check_only and check_request: this release
    still does, telling the client (Warning header, the record's deprecations) and the log."""
    body = {"messages": [{"role": "user", "content": HARMFUL}]}
    # read as the boolean it names, so the tighten-only rule still applies (an error response
    # carries the notice too)
    relaxed = proxy().post(body | {"aligners": {"check_only": "true"}})
    assert relaxed.status_code == 403 and relaxed.json()["error"]["param"] == "aligners.check_only"
    assert "deprecated" in relaxed.headers["warning"]
    server = proxy(allow_client_policy=["check_only"])
    response = server.post(body | {"aligners": {"check_only": "True", "check_request": "FALSE"}})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["choices"][0]["message"]["content"] == ANSWER  # check_only: scored, kept
    notices = [
        "aligners.check_only: the string 'True' is deprecated and will be a 400 in the next "
        "release; send the JSON boolean true",
        "aligners.check_request: the string 'FALSE' is deprecated and will be a 400 in the next "
        "release; send the JSON boolean false",
    ]
    assert reply["aligners"]["deprecations"] == notices
    assert response.headers.get_list("warning") == [f'299 aligners "{n}"' for n in notices]
    # the same answer as the JSON booleans give, which carry no notice
    plain = server.post(body | {"aligners": {"check_only": True, "check_request": False}})
    assert plain.json()["choices"] == reply["choices"]
    assert plain.json()["aligners"]["flagged"] == reply["aligners"]["flagged"] == ["ethical"]
    assert "deprecations" not in plain.json()["aligners"] and "warning" not in plain.headers
    # streamed: the last chunk's record says it too
    text, last = server.stream(HARMFUL, check_only="true")
    assert text == ANSWER
    assert last.model_extra["aligners"]["deprecations"] == [
        "aligners.check_only: the string 'true' is deprecated and will be a 400 in the next "
        "release; send the JSON boolean true"
    ]
    # any other string is still a 400 (test_per_request_thresholds_per_criterion_are_...)
    maybe = server.post(body | {"aligners": {"check_request": "maybe"}})
    assert maybe.status_code == 400 and "check_request" in maybe.text


def test_string_thresholds_still_work_with_a_deprecation_notice(proxy) -> None:
    """Earlier releases read "0.5" as 0.5 (pydantic's lax float), per request and in the
    settings: still, with a notice."""
    server = proxy()
    body = {"messages": [{"role": "user", "content": HARMFUL}]}
    response = server.post(body | {"aligners": {"threshold": "0.6"}})
    assert response.status_code == 200, response.text
    record = response.json()["aligners"]
    assert record["thresholds"] == {"ethical": 0.6}  # read as the number, still tighten-only
    notice = (
        "aligners.threshold: the string '0.6' is deprecated and will be a 400 in the next "
        "release; send the JSON number 0.6"
    )
    assert record["deprecations"] == [notice]
    assert response.headers["warning"] == f'299 aligners "{notice}"'
    looser = server.post(body | {"aligners": {"threshold": "0.2"}})
    assert looser.status_code == 403 and "deprecated" in looser.headers["warning"]
    words = server.post(body | {"aligners": {"request_threshold": "high"}})
    assert words.status_code == 400 and "request_threshold" in words.text
    with pytest.warns(DeprecationWarning, match="a threshold as a string is deprecated"):
        settings = ProxySettings(threshold="0.3", block_threshold="0", warmup=False)
    assert (settings.threshold, settings.block_threshold) == (0.3, 0.0)
    with pytest.warns(DeprecationWarning, match="a string for a flag is deprecated"):
        assert ProxySettings(check_request="true", warmup=False).check_request is True
