"""Delivery to the app: the requests the sandbox sends, signed and POSTed as Slack does.

`Courier.deliver` signs a body with the app's signing secret, POSTs it to the app's URL within
Slack's 3-second window and reports what happened as a `Delivery`; the last 50 are kept for
the page, and each one is announced to the fake Slack's subscribers.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable
from typing import Any, TypedDict

import aiohttp

from bot.sandbox import signing


class Delivery(TypedDict, total=False):
    """What happened to one request the sandbox sent the bot, as the page is told."""

    ok: bool
    kind: str
    summary: str
    user: str
    status: int
    ms: float
    error: str | None
    at: float
    body: str
    deliveries: list[Delivery]
    errors: dict[str, str]


class Courier:
    """Signs and sends requests to one app; remembers the recent outcomes."""

    def __init__(
        self,
        *,
        bot_url: str,
        signing_secret: str,
        ack_timeout_s: float,
        publish: Callable[[dict[str, Any]], None],
    ) -> None:
        """Send to `bot_url`, signed with `signing_secret`; announce outcomes with `publish`."""
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.ack_timeout_s = ack_timeout_s
        self.recent: collections.deque[Delivery] = collections.deque(maxlen=50)
        self._publish = publish
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP client (a later delivery opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_event(self, event: dict[str, Any], *, user: str, summary: str) -> Delivery:
        """Deliver one Events API event in its envelope, with a fresh event id."""
        event_id = f"Ev{secrets.token_hex(5).upper()}"
        body = signing.event_body(event=event, event_id=event_id)
        return await self.deliver(str(event["type"]), body, user=user, summary=summary)

    async def deliver(self, kind: str, body: str, *, user: str, summary: str) -> Delivery:
        """Sign `body` and POST it to the bot, as Slack does; record and announce the outcome."""
        headers = signing.sign(body, secret=self.signing_secret)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        started = time.perf_counter()
        status, text, error = 0, "", None
        try:
            async with self._session.post(
                self.bot_url,
                data=body.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout_s),
            ) as response:
                status, text = response.status, await response.text()
        except TimeoutError:
            error = f"operation_timeout: the bot did not answer within {self.ack_timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"the bot is unreachable at {self.bot_url}: {exc}"
        if error is None and not 200 <= status < 300:
            detail = " ".join(text.split())[:300]
            error = f"the bot answered HTTP {status}" + (f": {detail}" if detail else "")
        delivery = Delivery(
            ok=error is None,
            kind=kind,
            summary=summary[:200],
            user=user,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            error=error,
            at=time.time(),
        )
        self.recent.append(delivery)
        self._publish({"type": "delivery", **delivery})
        return delivery | Delivery(body=text)


def slack_failure(delivery: Delivery) -> str:
    """The error word Slack shows when a slash command's request failed."""
    if delivery["status"] == 0:
        error = delivery.get("error") or ""
        return "operation_timeout" if error.startswith("operation_timeout") else "dispatch_failed"
    return "http_service_error" if delivery["status"] >= 500 else "http_client_error"
