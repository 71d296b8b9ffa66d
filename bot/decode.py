"""Read, authenticate and decode an HTTP request body before anything trusts it.

The order is fixed so that an unsigned request costs nothing beyond what its signature needs:
size cap (413) -> Slack signature over the raw bytes (401) -> content type and charset (415) ->
strict UTF-8 (400) -> form or JSON, depth-capped and NUL-free (400) -> the payload model of
its type (400). A refusal is a ``Refused`` with a status and a plain-words reason; the route
answers it and logs one line, never a traceback.

NUL characters are refused, not stripped: Slack never sends them, PostgreSQL's text columns
cannot hold them, and a silently altered body would no longer be the one that was signed.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pydantic_core
from aiohttp import web
from pydantic import BaseModel

from bot.payloads import Kind, Malformed, events_kind, form_kind, interactivity_kind
from orchestration.telemetry import get_logger

log = get_logger("opsgate.intake")

MAX_BODY_BYTES = 1 << 20  # Slack's largest payloads (a full message or modal) are far smaller
MAX_DEPTH = 48  # Slack's documents nest about a dozen levels; JSON parsing itself stops at 200
SIGNATURE_TTL_S = 300  # Slack's replay window
MAX_TIMESTAMP_DIGITS = 12
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
UTF8 = ("utf-8", "utf8")


class Refused(Exception):
    """A request refused at intake: ``status`` (4xx) and a plain-words ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason

    def log(self, *, surface: str, kind: str = "unknown") -> None:
        """The one ``request_refused`` log line of this refusal (no traceback, no body)."""
        log.warning(
            "request_refused", surface=surface, kind=kind, reason=self.reason, status=self.status
        )


@dataclass(frozen=True)
class SlackBody:
    """A signed, decoded, checked Slack request body."""

    kind: Kind
    text: str  # the raw body as signed (Bolt verifies it again)
    body: dict[str, Any]  # what Bolt and the listeners read
    model: BaseModel  # the same, checked against its payload model


async def read_body(request: web.Request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (before reading it when declared)."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is larger than {limit} bytes")
    return b"".join(chunks)


def slack_signature_ok(
    body: bytes, *, secret: str, timestamp: str, signature: str, now: float | None = None
) -> bool:
    """True when ``signature`` is Slack's v0 HMAC of the raw bytes, made within 5 minutes.

    Slack signs bytes, so the check runs on bytes: a body need not be valid text to be refused
    (or accepted) on its signature alone.
    """
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > MAX_TIMESTAMP_DIGITS:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > SIGNATURE_TTL_S:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def check_charset(request: web.Request) -> None:
    """Refuse (415) a declared charset other than UTF-8, known or not."""
    charset = request.charset
    if charset is not None and charset.lower() not in UTF8:
        raise Refused(415, "the body must be UTF-8")


def utf8(body: bytes) -> str:
    """The body as text; 400 when it is not valid UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not valid UTF-8 (byte {exc.start})") from None


def check_strings(document: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (400) a document nested deeper than ``max_depth`` or holding a NUL character."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise Refused(400, "the body contains a NUL character")
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise Refused(400, f"the body is nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                stack.extend((key, depth) for key in node)
                stack.extend((value, depth + 1) for value in node.values())
            else:
                stack.extend((value, depth + 1) for value in node)


def parse_json(text: str | bytes) -> Any:
    """A JSON document (no NaN or Infinity), depth-capped and NUL-free; 400 otherwise.

    pydantic-core's parser stops at 200 levels with an error instead of a RecursionError.
    """
    try:
        document = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise Refused(400, f"the body is not valid JSON ({str(exc)[:120]})") from None
    check_strings(document)
    return document


def parse_form(text: str) -> dict[str, str]:
    """Form fields: well-formed, each given once, percent-escapes strict UTF-8; 400 otherwise."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError as exc:  # UnicodeDecodeError included
        raise Refused(400, f"the body is not a valid form ({str(exc)[:120]})") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Refused(400, "a form field is given twice")
    # A form is flat: one pass over its strings is check_strings' answer, without its stack.
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise Refused(400, "the body contains a NUL character")
    return fields


EVENTS_API_TYPES = (Kind.EVENT_CALLBACK, Kind.URL_VERIFICATION, Kind.APP_RATE_LIMITED)


def check_document(document: dict[str, Any]) -> Kind:
    """Check an already parsed Slack document (Socket Mode delivers them parsed); 400 if bad."""
    check_strings(document)
    try:
        if "command" in document or "ssl_check" in document:
            return form_kind(document)[0]
        if document.get("type") in EVENTS_API_TYPES:
            return events_kind(document)[0]
        return interactivity_kind(document)[0]
    except Malformed as exc:
        raise Refused(400, exc.reason) from None


def decode_slack(request: web.Request, raw: bytes) -> SlackBody:
    """Decode and check a Slack body whose signature was verified."""
    check_charset(request)
    content_type = request.content_type
    if content_type not in (FORM, JSON):
        raise Refused(415, f"Slack bodies are {FORM} or {JSON}")
    text = utf8(raw)
    try:
        if content_type == JSON:
            document = parse_json(text)
            kind, model = events_kind(document)
            return SlackBody(kind=kind, text=text, body=document, model=model)
        fields = parse_form(text)
        if "payload" not in fields:
            kind, model = form_kind(fields)
            return SlackBody(kind=kind, text=text, body=dict(fields), model=model)
        if len(fields) > 1:
            raise Refused(400, "an interactivity body holds only the payload field")
        payload = parse_json(fields["payload"])
        kind, model = interactivity_kind(payload)
        return SlackBody(kind=kind, text=text, body=payload, model=model)
    except Malformed as exc:
        raise Refused(400, exc.reason) from None
