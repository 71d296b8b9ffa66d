"""Hostile HTTP requests for opsgate's intake: a seeded generator for the fuzz test.

Each strategy starts from a body Slack (or Alertmanager) really sends and breaks it the ways an
attacker on the network would: fields dropped or replaced by any JSON value, NUL bytes and lone
surrogates in strings, broken JSON, deep nesting, invalid UTF-8, unknown charsets and content
types; then sends it signed with the app's secret, or unsigned (missing, stale, garbled or
foreign signatures). The webhooks get the same treatment: Alertmanager bodies with the bearer
token or without a valid one, PagerDuty V3 bodies signed ``v1=`` with the webhook secret or with
a missing, garbled, foreign or other-body signature.

The generator is plain ``random.Random`` with a seed, not hypothesis: drawing 10,000 examples
through hypothesis took minutes on a loaded machine, this takes about a second, and a failing
seed replays exactly (``FUZZ_SEED``).
"""

import copy
import functools
import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bot.sandbox import signing

SLACK_PATH = "/slack/events"
ALERT_PATH = "/alerts/alertmanager"
PAGERDUTY_PATH = "/alerts/pagerduty"
PAGERDUTY_SIGNATURE = "X-PagerDuty-Signature"
CHANNEL = "C0INCIDENT"
USER = "UREQ"


@dataclass(frozen=True)
class Probe:
    """One request to send: where, what, and which generator made it (for the report)."""

    path: str
    body: bytes
    headers: dict[str, str]
    signed: bool
    label: str


def sign_bytes(body: bytes, *, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers over raw bytes (Slack signs bytes, not text)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest.hexdigest()}"}


# --- the valid bodies every mutation starts from ----------------------------------------------


def command_fields(text: str) -> list[tuple[str, str]]:
    """The form fields of ``/incident text`` as Slack sends them."""
    body = signing.slash_command_body(
        command="/incident",
        text=text,
        user_id=USER,
        channel_id=CHANNEL,
        trigger_id="1700000000.1.fixed",  # fixed: hypothesis needs draws to repeat exactly
        response_url="https://hooks.slack.com/commands/T0SANDBOX/1/fixed",
    )
    return parse_qsl(body, keep_blank_values=True)


def _payload_of(form: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(dict(parse_qsl(form))["payload"])
    return loaded


def interactivity_templates() -> list[dict[str, Any]]:
    """Block actions, modal submission and close, shortcuts, suggestions."""
    click = _payload_of(
        signing.block_actions_body(
            user_id=USER,
            channel_id=CHANNEL,
            action_id="approve_step",
            value="nonce-0123456789",
            message_ts="1700000000.000100",
            block_id="approval_actions",
        )
    )
    view = {
        "id": "V0001",
        "type": "modal",
        "callback_id": "reject_reason",
        "private_metadata": "nonce-0123456789",
        "hash": "1700000000.abc",
    }
    values = {"reject_reason_block": {"reject_reason_input": {"type": "plain_text_input"}}}
    values["reject_reason_block"]["reject_reason_input"]["value"] = "it is the wrong host"
    submission = _payload_of(signing.view_submission_body(user_id=USER, view=view, values=values))
    closed = {**copy.deepcopy(submission), "type": "view_closed", "is_cleared": False}
    shortcut = {
        "type": "shortcut",
        "callback_id": "open_incident",
        "trigger_id": "1.2.abc",
        "user": {"id": USER, "team_id": "T0SANDBOX"},
        "team": {"id": "T0SANDBOX"},
        "token": "x",
    }
    message_action = {
        **shortcut,
        "type": "message_action",
        "channel": {"id": CHANNEL},
        "message": {"ts": "1.2", "text": "hello", "user": USER},
    }
    suggestion = {
        "type": "block_suggestion",
        "action_id": "pick",
        "block_id": "b",
        "value": "ch",
        "user": {"id": USER},
        "team": {"id": "T0SANDBOX"},
    }
    return [click, submission, closed, shortcut, message_action, suggestion]


def event_templates() -> list[dict[str, Any]]:
    """Events API deliveries: a mention, a channel message, the URL handshake."""
    mention = json.loads(
        signing.event_body(
            event={
                "type": "app_mention",
                "user": USER,
                "channel": CHANNEL,
                "text": "<@UBOT> checkout-api is down",
                "ts": "1700000000.000200",
            },
            event_id="Ev0001",
        )
    )
    message = copy.deepcopy(mention)
    message["event"] = {
        "type": "message",
        "user": USER,
        "channel": CHANNEL,
        "text": "checkout-api is down",
        "ts": "1700000000.000300",
        "channel_type": "channel",
    }
    message["event_id"] = "Ev0002"
    handshake = json.loads(signing.url_verification_body("challenge-abc"))
    return [mention, message, handshake]


def alert_template() -> dict[str, Any]:
    """An Alertmanager v4 webhook with one firing alert."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "opsgate",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ServiceDown", "service": "checkout-api"},
                "annotations": {"summary": "checkout-api is down"},
                "startsAt": "2026-11-25T10:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }


def pagerduty_template() -> dict[str, Any]:
    """A PagerDuty Webhooks V3 ``incident.triggered`` delivery."""
    return {
        "event": {
            "id": "01DFFOTA5E6HZE0LYPT1NXI8LA",
            "event_type": "incident.triggered",
            "resource_type": "incident",
            "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),  # fresh
            "agent": {"id": "PUSER01", "type": "user_reference"},
            "client": None,
            "data": {
                "id": "Q0FUZZ0001",
                "type": "incident",
                "number": 7,
                "title": "checkout-api is down",
                "status": "triggered",
                "urgency": "high",
                "html_url": "https://example.pagerduty.com/incidents/Q0FUZZ0001",
                "service": {"id": "PSVC01", "summary": "checkout-api"},
            },
        }
    }


INTERACTIVITY = interactivity_templates()
EVENTS = event_templates()
ALERT = alert_template()
PAGERDUTY = pagerduty_template()

# --- values and mutations -------------------------------------------------------------------

HOSTILE_TEXT = [
    "\x00",
    "checkout-api is down\x00",
    "\ud800",
    "\udfff tail",
    "<@U999> <!here>",
    "approve_step",
    "x" * 5000,
    "",
    " ",
    "%00",
    "\u202e\ufeff",
    "resolve",
    "cancel now",
    "checkout-api is down",
    "payload",
]
ALPHABETS = [
    "abcdefghij -_/@<>&%=",
    "\x00\x01\x1f\x7f\u0085\u2028",
    "\ud800\udbff\udc00\udfff",  # lone surrogates
    "é日本語🙂\ufeff\u202e",
]


def text(rng: random.Random) -> str:
    """A short string, often hostile."""
    if rng.random() < 0.4:
        return rng.choice(HOSTILE_TEXT)
    alphabet = rng.choice(ALPHABETS)
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))


def leaf(rng: random.Random) -> Any:
    """Any JSON scalar."""
    return rng.choice(
        [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.randint(-(2**70), 2**70),
            lambda: rng.uniform(-1e300, 1e300),
            lambda: text(rng),
        ]
    )()


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, a few levels deep at most."""
    roll = rng.random()
    if depth >= 3 or roll < 0.6:
        return leaf(rng)
    if roll < 0.8:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {text(rng): json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


@functools.cache
def nested(depth: int, *, leaf: str = "0") -> str:
    """JSON text nested ``depth`` levels deep (arrays and objects alternating)."""
    opens = "".join('[{"a":' if i % 2 else "[" for i in range(depth))
    closes = "".join("}]" if i % 2 else "]" for i in reversed(range(depth)))
    return opens + leaf + closes


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if len(prefix) >= 8:  # Slack's documents are shallow; below that is nesting we added
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def mutated(rng: random.Random, template: dict[str, Any]) -> Any:
    """``template`` with one to four nodes deleted, replaced or poisoned; sometimes wrapped."""
    doc: Any = copy.deepcopy(template)
    for _ in range(rng.randint(1, 4)):
        paths = list(_paths(doc)) if isinstance(doc, dict | list) else []
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rng.choice(["delete", "replace", "replace", "poison", "deep"])
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = json_value(rng)
        elif op == "poison":
            parent[last] = rng.choice(HOSTILE_TEXT)
        else:
            parent[last] = json.loads(nested(rng.randint(2, 60)))
    if rng.random() < 0.05:
        doc = rng.choice([[doc], "string", 17, None])
    return doc


def dumps(doc: Any, *, ascii_only: bool) -> bytes:
    """JSON bytes; lone surrogates become ``\\udXXX`` escapes or invalid UTF-8 bytes."""
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def json_body(rng: random.Random, template: dict[str, Any]) -> bytes:
    """A broken JSON document: mutated, truncated, nested far too deep, or junk."""
    kind = rng.choice(["mutated", "mutated", "mutated", "truncated", "deep", "junk"])
    if kind == "deep":
        big = rng.random() < 0.03  # past the size cap once encoded: rare, as it is slow to send
        return nested(
            rng.choice([50_000, 120_000] if big else [49, 100, 199, 200, 201, 5000])
        ).encode()
    if kind == "junk":
        return rng.randbytes(rng.randrange(0, 200))
    body = dumps(mutated(rng, template), ascii_only=rng.random() < 0.5)
    if kind == "truncated" and body:
        return body[: rng.randrange(0, len(body))]
    return body


INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]


def corrupt(rng: random.Random, body: bytes) -> bytes:
    """Sometimes splice invalid UTF-8 into ``body``."""
    if rng.random() > 0.15:
        return body
    at = rng.randrange(0, len(body) + 1)
    return body[:at] + rng.choice(INVALID_UTF8) + body[at:]


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CONTENT_TYPES = [
    None,
    "text/plain",
    "multipart/form-data; boundary=zz",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/x-www-form-urlencoded; charset=no-such-charset",
    "application/json; charset=bogus",
    "application/json; charset=UTF-8",
    "application/x-www-form-urlencoded; charset=utf-8",
]


def content_type(rng: random.Random, right: str) -> str | None:
    """Usually the right content type; sometimes a wrong one or an unknown charset."""
    return right if rng.random() < 0.75 else rng.choice(CONTENT_TYPES)


def command_body(rng: random.Random) -> bytes:
    """A slash command with fields dropped, replaced, duplicated or percent-garbled."""
    fields = command_fields(rng.choice(["help", "status", "metrics", "bogus", "x y", "resolve"]))
    for _ in range(rng.randrange(0, 5)):
        op = rng.choice(["drop", "replace", "duplicate", "add", "text"])
        index = rng.randrange(0, len(fields)) if fields else 0
        if op == "drop" and fields:
            fields.pop(index)
        elif op == "replace" and fields:
            fields[index] = (fields[index][0], text(rng))
        elif op == "duplicate" and fields:
            fields.append((fields[index][0], text(rng)))
        elif op == "add":
            fields.append((rng.choice(["payload", "ssl_check", "type", "x"]), text(rng)))
        else:
            fields = [(k, text(rng) if k == "text" else v) for k, v in fields]
    encoded = urlencode(fields, errors="surrogatepass").encode()
    if rng.random() < 0.1:
        encoded += rng.choice([b"&text=%ZZ", b"&text=%FF%FE", b"&&==&", b"&text=%00"])
    return encoded


def interactivity_body(rng: random.Random) -> bytes:
    """A ``payload=`` form whose JSON is broken in one of the ways above."""
    payload = json_body(rng, rng.choice(INTERACTIVITY))
    if rng.random() < 0.1:
        return b"payload=" + payload  # not even percent-encoded
    as_text = payload.decode("utf-8", "surrogateescape")
    return urlencode({"payload": as_text}, errors="surrogateescape").encode()


def slack_request(rng: random.Random) -> tuple[str, bytes, str]:
    """(label, body, right content type) of one malformed Slack request."""
    kind = rng.choice(["command", "interactivity", "event", "raw"])
    if kind == "command":
        return kind, command_body(rng), FORM
    if kind == "interactivity":
        return kind, interactivity_body(rng), FORM
    if kind == "event":
        return kind, json_body(rng, rng.choice(EVENTS)), JSON
    return kind, rng.randbytes(rng.randrange(0, 300)), rng.choice([FORM, JSON])


def printable(rng: random.Random) -> str:
    """Printable ASCII (a client cannot send control characters in a header)."""
    return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randrange(0, 80)))


def unsigned_headers(rng: random.Random, body: bytes, secret: str) -> dict[str, str]:
    """Headers that do not prove the body came from Slack."""
    now = int(time.time())
    how = rng.choice(["none", "garbled", "stale", "foreign", "other-body", "bad-ts"])
    if how == "none":
        return {}
    if how == "garbled":
        return {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": printable(rng)}
    if how == "stale":
        return sign_bytes(body, secret=secret, timestamp=now - 301 - rng.randrange(0, 10**6))
    if how == "foreign":
        return sign_bytes(body, secret="not-the-secret")
    if how == "other-body":
        return sign_bytes(body + b"x", secret=secret)
    ts = rng.choice(["", "abc", "1e9", "-1", "99999999999999999999999", " 1", "١٢٣"])
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + "0" * 64}


def pagerduty_signature(body: bytes, secret: str) -> str:
    """``v1=<hex HMAC-SHA256 of body>``, as PagerDuty signs a delivery."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_probe(rng: random.Random, *, alert_token: str) -> Probe:
    """An Alertmanager webhook: broken body; the bearer token, or a missing or wrong one."""
    body = corrupt(rng, json_body(rng, ALERT))
    signed = rng.random() < 0.7
    if signed:
        headers = {"Authorization": f"Bearer {alert_token}"}
    else:
        headers = rng.choice(
            [
                {},
                {"Authorization": "Bearer not-the-token"},
                {"Authorization": f"Bearer {alert_token}x"},
                {"Authorization": f"Basic {alert_token}"},
                {"Authorization": printable(rng)},
            ]
        )
    ctype = content_type(rng, JSON)
    if ctype:
        headers["Content-Type"] = ctype
    return Probe(ALERT_PATH, body, headers, signed=signed, label="alert")


def pagerduty_probe(rng: random.Random, *, pagerduty_secret: str) -> Probe:
    """A PagerDuty V3 webhook: broken body; signed with the secret, or not provably."""
    body = corrupt(rng, json_body(rng, PAGERDUTY))
    signed = rng.random() < 0.7
    if signed:
        # Sometimes among other (rotated-out) signatures, as during a secret rotation.
        ours = pagerduty_signature(body, pagerduty_secret)
        other = pagerduty_signature(body, "an-old-secret-xxxxxxxx")
        headers = {PAGERDUTY_SIGNATURE: rng.choice([ours, f"{other},{ours}", f"{ours}, {other}"])}
    else:
        how = rng.choice(["none", "garbled", "foreign", "other-body", "v0"])
        headers = {
            "none": {},
            "garbled": {PAGERDUTY_SIGNATURE: printable(rng)},
            "foreign": {PAGERDUTY_SIGNATURE: pagerduty_signature(body, "not-the-secret-xx")},
            "other-body": {PAGERDUTY_SIGNATURE: pagerduty_signature(body + b" ", pagerduty_secret)},
            "v0": {
                PAGERDUTY_SIGNATURE: pagerduty_signature(body, pagerduty_secret).replace("v1", "v0")
            },
        }[how]
    ctype = content_type(rng, JSON)
    if ctype:
        headers["Content-Type"] = ctype
    return Probe(PAGERDUTY_PATH, body, headers, signed=signed, label="pagerduty")


def probe(rng: random.Random, *, secret: str, alert_token: str, pagerduty_secret: str) -> Probe:
    """One hostile request: Slack (signed or not) or a webhook (authenticated or not)."""
    roll = rng.random()
    if roll < 0.08:
        return alert_probe(rng, alert_token=alert_token)
    if roll < 0.16:
        return pagerduty_probe(rng, pagerduty_secret=pagerduty_secret)
    label, body, right = slack_request(rng)
    body = corrupt(rng, body)
    signed = rng.random() < 0.5
    headers = sign_bytes(body, secret=secret) if signed else unsigned_headers(rng, body, secret)
    ctype = content_type(rng, right)
    if ctype:
        headers["Content-Type"] = ctype
    return Probe(SLACK_PATH, body, headers, signed=signed, label=label)


def probes(
    seed: int, count: int, *, secret: str, alert_token: str, pagerduty_secret: str
) -> list[Probe]:
    """``count`` hostile requests drawn from ``seed``."""
    rng = random.Random(seed)
    return [
        probe(rng, secret=secret, alert_token=alert_token, pagerduty_secret=pagerduty_secret)
        for _ in range(count)
    ]
