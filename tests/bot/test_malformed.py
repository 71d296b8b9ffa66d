"""One test per class of malformed request: each gets its 4xx and one log line, nothing more.

They go through the real app (``Stack``); the NUL tests run on PostgreSQL too, whose text
columns refuse NUL characters, and check that nothing reached the database.
"""

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from sqlmodel import select
from structlog.testing import capture_logs

from bot.decode import MAX_BODY_BYTES, MAX_DEPTH, Refused, check_strings, parse_form, parse_json
from bot.sandbox import signing
from orchestration.models import InboxItem
from tests.bot.malformed import (
    ALERT,
    ALERT_PATH,
    EVENTS,
    INTERACTIVITY,
    SLACK_PATH,
    command_fields,
    nested,
    sign_bytes,
)
from tests.bot.scenario import CHANNEL, REQUESTER, SECRET, Stack

ALERT_TOKEN = "malformed-alert-token"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def booted(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("OPSGATE_ALERT_TOKEN", ALERT_TOKEN)
    return Stack(
        db_url=db_url,
        tmp_path=tmp_path,
        slack={"alert_channel": "C0ALERTS", "channel_rate_per_s": 1000},
    )


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """The app on SQLite: refusals happen before any database is involved."""
    async with booted(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, monkeypatch) as s:
        yield s


@pytest.fixture
async def any_db_stack(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    """The app on SQLite and on PostgreSQL (whose text columns refuse NUL)."""
    async with booted(db_url, tmp_path, monkeypatch) as s:
        yield s


async def post(
    stack: Stack,
    body: bytes,
    *,
    content_type: str | None = FORM,
    signed: bool = True,
    path: str = SLACK_PATH,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """POST raw bytes; the status and the structlog lines logged while answering."""
    assert stack.http is not None
    assert stack.server is not None
    sent = sign_bytes(body, secret=SECRET) if signed else {}
    if content_type:
        sent["Content-Type"] = content_type
    sent.update(headers or {})
    data = io.BytesIO(body) if len(body) > 2**18 else body  # aiohttp warns on large bytes
    with capture_logs() as logs:
        async with stack.http.post(stack.server.make_url(path), data=data, headers=sent) as resp:
            await resp.read()
            return resp.status, logs


def refusals(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "request_refused"]


def assert_refused_once(logs: list[dict[str, Any]], status: int) -> dict[str, Any]:
    """Exactly one refusal line with ``status``, no traceback anywhere."""
    (line,) = refusals(logs)
    assert line["status"] == status
    assert all("exc_info" not in entry and "exception" not in entry for entry in logs)
    return line


def command(text: str = "help", **changes: str | None) -> bytes:
    fields = [(k, v) for k, v in command_fields(text) if changes.get(k, v) is not None]
    return urlencode([(k, changes.get(k) or v) for k, v in fields]).encode()


def interactive(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click(**changes: Any) -> dict[str, Any]:
    payload = json.loads(json.dumps(INTERACTIVITY[0]))
    payload.update(changes)
    return payload


async def inbox_rows(stack: Stack) -> list[InboxItem]:
    return await stack.control.db.run(lambda s: list(s.exec(select(InboxItem))))


# --- unsigned: refused on the signature alone -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfetoken=x&command=%2Fincident", FORM),
        (command(), "application/x-www-form-urlencoded; charset=no-such-charset"),
        (command(), "application/json; charset=utf-16"),
        (b"[" * 100_000, JSON),
    ],
    ids=["invalid-utf8", "unknown-charset", "utf16", "deep-nesting"],
)
async def test_an_unsigned_body_is_refused_401_before_it_is_decoded(
    stack: Stack, body: bytes, content_type: str
) -> None:
    status, logs = await post(stack, body, content_type=content_type, signed=False)
    assert status == 401
    line = assert_refused_once(logs, 401)
    assert line["kind"] == "unknown"
    assert line["reason"] == "invalid signature"


async def test_a_stale_foreign_or_garbled_signature_is_refused_401(stack: Stack) -> None:
    body = command()
    stale = sign_bytes(body, secret=SECRET, timestamp=1_600_000_000)
    foreign = sign_bytes(body, secret="another-app")
    odd_digits = {"X-Slack-Request-Timestamp": "١٧٠٠٠٠٠٠٠٠", "X-Slack-Signature": "v0=00"}
    for headers in (stale, foreign, odd_digits):
        status, logs = await post(stack, body, signed=False, headers=headers)
        assert status == 401
        assert_refused_once(logs, 401)


# --- signed, but not a body opsgate takes -----------------------------------------------------


async def test_a_body_past_the_size_cap_is_refused_413(stack: Stack) -> None:
    body = b"text=" + b"a" * MAX_BODY_BYTES
    for signed in (True, False):
        status, logs = await post(stack, body, signed=signed)
        assert status == 413
        assert_refused_once(logs, 413)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json; charset=bogus",
        "text/plain",
        None,
    ],
)
async def test_a_signed_body_in_another_charset_or_content_type_is_refused_415(
    stack: Stack, content_type: str | None
) -> None:
    status, logs = await post(stack, command(), content_type=content_type)
    assert status == 415
    assert_refused_once(logs, 415)


async def test_utf8_with_an_explicit_charset_is_accepted(stack: Stack) -> None:
    status, _ = await post(stack, command(), content_type=f"{FORM}; charset=UTF-8")
    assert status == 200


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"command=%2Fincident&text=\xff", FORM, "not valid UTF-8"),
        (b"command=%2Fincident&text=%FF%FE", FORM, "not a valid form"),
        (b"payload=%7B%22type%22", FORM, "not valid JSON"),
        (b'{"type": "event_callback", "x": NaN}', JSON, "not valid JSON"),
        (nested(100_000).encode(), JSON, "not valid JSON"),
        (
            ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode(),
            JSON,
            f"deeper than {MAX_DEPTH}",
        ),
        (b'["a list"]', JSON, "must be a JSON object"),
        (b"token=x&team_id=T1", FORM, "needs a command or a payload"),
        (command() + b"&text=again", FORM, "given twice"),
        (interactive(click()) + b"&command=x", FORM, "only the payload field"),
    ],
    ids=[
        "invalid-utf8",
        "percent-invalid-utf8",
        "broken-json",
        "nan",
        "recursion",
        "too-deep",
        "not-an-object",
        "no-command",
        "duplicate-field",
        "payload-and-more",
    ],
)
async def test_a_signed_body_that_does_not_decode_is_refused_400(
    stack: Stack, body: bytes, content_type: str, reason: str
) -> None:
    status, logs = await post(stack, body, content_type=content_type)
    assert status == 400
    assert reason in assert_refused_once(logs, 400)["reason"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (command(channel_id=None), "channel_id"),
        (command(user_id=None), "user_id"),
        (interactive(click(actions=[])), "actions"),
        (interactive(click(actions=[{"value": "n"}])), "actions.0.action_id"),
        (interactive(click(actions=[{"action_id": "approve_step", "value": 7}])), "value"),
        (interactive(click(user={"name": "no id"})), "user.id"),
        (interactive(click(user="U1")), "user"),
        (interactive(click(channel="C1")), "channel"),
        (interactive(click(response_urls=None)), "response_urls"),
        (interactive(click(team=17)), "team"),
        (interactive(click(authorizations="x")), "authorizations"),
        (interactive(click(type="no_such_type")), "no payload of this type"),
        (interactive({**INTERACTIVITY[1], "view": {"type": "modal"}}), "view.callback_id"),
        (
            interactive(
                {**INTERACTIVITY[1], "view": {**INTERACTIVITY[1]["view"], "state": {"values": []}}}
            ),
            "view.state.values",
        ),
    ],
)
async def test_a_signed_payload_of_the_wrong_shape_is_refused_400_and_bolt_never_sees_it(
    stack: Stack, body: bytes, where: str
) -> None:
    status, logs = await post(stack, body)
    assert status == 400
    assert where in assert_refused_once(logs, 400)["reason"]
    await stack.settle()
    assert [c.method for c in stack.slack.calls if c.method != "auth.test"] == []


@pytest.mark.parametrize(
    ("event", "where"),
    [
        ({"user": REQUESTER, "channel": CHANNEL}, "event.type"),
        ({"type": "app_mention", "user": 5}, "event.user"),
        ({"type": "app_mention", "text": ["x"]}, "event.text"),
    ],
)
async def test_a_signed_event_of_the_wrong_shape_is_refused_400(
    stack: Stack, event: dict[str, Any], where: str
) -> None:
    body = {**EVENTS[0], "event": event}
    status, logs = await post(stack, json.dumps(body).encode(), content_type=JSON)
    assert status == 400
    assert where in assert_refused_once(logs, 400)["reason"]


# --- NUL never reaches the database -----------------------------------------------------------


async def test_a_nul_character_in_a_command_is_refused_and_nothing_is_recorded(
    any_db_stack: Stack,
) -> None:
    status, logs = await post(any_db_stack, command(text="checkout-api is down\x00"))
    assert status == 400
    assert "NUL" in assert_refused_once(logs, 400)["reason"]
    await any_db_stack.settle()
    assert await inbox_rows(any_db_stack) == []
    assert any_db_stack.slack.calls_to("chat.postMessage") == []


async def test_a_nul_character_anywhere_in_a_payload_or_event_is_refused(
    any_db_stack: Stack,
) -> None:
    poisoned_key = {**EVENTS[0], "event": {**EVENTS[0]["event"], "te\x00xt": "x"}}
    poisoned_text = {**EVENTS[0], "event": {**EVENTS[0]["event"], "text": "down\x00"}}
    for body in (poisoned_key, poisoned_text):
        status, _ = await post(any_db_stack, json.dumps(body).encode(), content_type=JSON)
        assert status == 400
    status, _ = await post(any_db_stack, interactive(click(trigger_id="\x00")))
    assert status == 400
    await any_db_stack.settle()
    assert await inbox_rows(any_db_stack) == []


async def test_a_nul_character_in_an_alert_is_refused_and_nothing_is_recorded(
    any_db_stack: Stack,
) -> None:
    alert = json.loads(json.dumps(ALERT))
    alert["alerts"][0]["annotations"]["summary"] = "checkout-api is down\x00"
    status, logs = await post(
        any_db_stack,
        json.dumps(alert).encode(),
        content_type=JSON,
        signed=False,
        path=ALERT_PATH,
        headers={"Authorization": f"Bearer {ALERT_TOKEN}"},
    )
    assert status == 400
    assert assert_refused_once(logs, 400)["kind"] == "webhook"
    await any_db_stack.settle()
    assert await inbox_rows(any_db_stack) == []


# --- alert webhooks: the same refusals --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff" + json.dumps(ALERT).encode(), JSON, 400),  # a 500 before: bytes in the answer
        (nested(100_000).encode(), JSON, 400),
        (b'{"status": "firing", "alerts": [{"status": 1}]}', JSON, 400),
        (json.dumps(ALERT).encode(), "application/json; charset=utf-16", 415),
        (b"[" + b" " * MAX_BODY_BYTES + b"]", JSON, 413),
    ],
    ids=["invalid-utf8", "recursion", "wrong-type", "charset", "too-large"],
)
async def test_a_malformed_alert_is_refused_with_a_4xx_and_one_line(
    stack: Stack, body: bytes, content_type: str, status: int
) -> None:
    got, logs = await post(
        stack,
        body,
        content_type=content_type,
        signed=False,
        path=ALERT_PATH,
        headers={"Authorization": f"Bearer {ALERT_TOKEN}"},
    )
    assert got == status
    assert_refused_once(logs, status)


# --- well-formed, but no listener takes it ----------------------------------------------------


async def test_an_unknown_action_command_or_view_is_a_404_and_runs_nothing(stack: Stack) -> None:
    unknown_action = click(actions=[{"action_id": "drop_tables", "value": "n"}])
    unknown_view = {**INTERACTIVITY[1], "view": {**INTERACTIVITY[1]["view"], "callback_id": "x"}}
    bodies = [
        interactive(unknown_action),
        interactive(unknown_view),
        interactive(INTERACTIVITY[3]),  # a shortcut: opsgate has none
        command(command="/deploy"),
    ]
    for body in bodies:
        status, logs = await post(stack, body)
        assert status == 404
        assert_refused_once(logs, 404)
    await stack.settle()
    assert await inbox_rows(stack) == []


async def test_an_event_type_opsgate_does_not_listen_to_is_acknowledged_and_ignored(
    stack: Stack,
) -> None:
    body = {**EVENTS[0], "event": {"type": "reaction_added", "user": REQUESTER}}
    status, logs = await post(stack, json.dumps(body).encode(), content_type=JSON)
    assert status == 200  # Slack would redeliver anything else
    events = [line["event"] for line in logs]
    assert "request_ignored" in events
    assert "request_refused" not in events
    await stack.settle()
    assert await inbox_rows(stack) == []


async def test_the_url_handshake_still_answers_the_challenge(stack: Stack) -> None:
    assert stack.http is not None
    body = signing.url_verification_body("the-challenge")
    async with stack.http.post(
        stack.url, data=body, headers=signing.sign(body, secret=SECRET)
    ) as r:
        assert r.status == 200
        assert (await r.json())["challenge"] == "the-challenge"


async def test_a_command_whose_text_says_payload_is_routed_as_a_command(stack: Stack) -> None:
    """Bolt's own parser drops every field of a form body containing the word "payload"."""
    status, text = await stack.command("help payload")
    assert status == 200
    assert "/incident" in text


async def test_a_malformed_socket_mode_payload_is_refused_before_any_listener(
    stack: Stack,
) -> None:
    """Socket Mode delivers parsed payloads past the route: a Bolt middleware checks them."""
    assert stack.app is not None
    poisoned = dict(parse_qsl(command(text="checkout-api is down").decode()))
    poisoned["text"] += "\x00"
    shapeless = click(user="U1")
    for body in (poisoned, shapeless):
        with capture_logs() as logs:
            response = await stack.app.bolt.async_dispatch(
                AsyncBoltRequest(body=body, mode="socket_mode")
            )
        assert response.status == 400
        assert assert_refused_once(logs, 400)["surface"] == "socket"
    await stack.settle()
    assert await inbox_rows(stack) == []
    fine = dict(parse_qsl(command(text="help").decode()))
    response = await stack.app.bolt.async_dispatch(AsyncBoltRequest(body=fine, mode="socket_mode"))
    assert response.status == 200


# --- the decoding functions on their own ------------------------------------------------------


def test_depth_and_nul_checks_walk_keys_values_and_lists() -> None:
    check_strings({"a": [{"b": "fine"}]})
    for bad in ({"k\x00": 1}, [["\x00"]], {"a": {"b": ["c\x00"]}}):
        with pytest.raises(Refused, match="NUL"):
            check_strings(bad)
    with pytest.raises(Refused, match="deeper"):
        check_strings(json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)))
    check_strings(json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH))


def test_json_parsing_never_raises_recursion_error() -> None:
    for depth in (199, 200, 201, 10_000, 1_000_000):
        with pytest.raises(Refused):
            parse_json("[" * depth + "]" * depth)
    with pytest.raises(Refused, match="not valid JSON"):
        parse_json('"\\ud800"')  # a lone surrogate cannot be stored as UTF-8 either


def test_form_parsing_is_strict() -> None:
    assert parse_form("a=1&b=") == {"a": "1", "b": ""}
    for bad in ("a=1&&b=2", "a=%FF", "a=1&a=2", "a=%00"):
        with pytest.raises(Refused):
            parse_form(bad)
