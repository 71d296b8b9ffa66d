"""The Notifier the outbox relay calls: renders control-plane events and posts them to Slack.

Order per channel is the relay's job; this module paces each channel at Slack's rate (about
one message per second), turns Slack's 429 and outages into retries, and records what it
posted so re-delivery after a crash updates instead of posting twice. Rendering Block Kit is
CPU work, so it runs in a worker thread and never delays Slack's acks on the event loop.

Where a message was posted (``outbox:<id>``, and the root's and cards' refs) is kept in the
relay's commit that marks the message delivered (the ``Record`` ``deliver`` returns), or that
defers it when a follow-up failed after the post (or the mark could not be committed), and is
written at once when the delivery is cancelled after the post. So a delivery costs one commit;
a crash between Slack's answer and that commit (which, for a message that redraws the root,
comes after the redraw) posts the message again. A message is looked up as already posted only
when an earlier attempt failed (``attempts > 0``): a posted message's ref is written no later
than its first failure.
The root's progress is redrawn from the plan as it stands, so when a later message of the same
pass redraws it anyway, the earlier one leaves it to that one; if that message does not go out
(deferred, dropped), the redraw is done when the pass ends (``pass_over``). The ts of each
incident's root and each card never change once stored, and are kept in memory once read back
from the database.
"""

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiolimiter import AsyncLimiter
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import strings
from bot.blocks import render, render_approval_card, render_incident_root
from bot.blocks.incidents import close_answer
from bot.blocks.rollout import render_promotion_card
from bot.refs import Refs, SlackRef
from bot.traces import TraceLinks
from orchestration.control import ControlPlane
from orchestration.errors import NotFound
from orchestration.inbox import NOTICE_KIND, NoticeKind
from orchestration.models import OutboxMessage
from orchestration.outbox import DeliveryDropped, DeliveryRetry, Record
from orchestration.rollout.stages import OPS_CHANNEL
from orchestration.telemetry import get_logger

log = get_logger("opsgate.delivery")

MEMO_LIMIT = 20_000  # refs kept in memory (roots and cards); cleared, not evicted, past it

CLOSE_NOTICES = frozenset(
    {
        NoticeKind.NO_SUCH_INCIDENT,
        NoticeKind.WHICH_INCIDENT,
        NoticeKind.ALREADY_CLOSED,
        NoticeKind.CLOSE_REFUSED,
    }
)

# Messages after which the incident's root shows what became of its steps (a chat.update).
ROOT_UPDATES = frozenset(
    {
        "approval_requested",
        "step_finished",
        "step_denied",
        "step_in_doubt",
        "plan_blocked",
        "plan_finished",
        "rejection_reason_added",
        "incident_resolved",
        "incident_cancelled",
    }
)

# Messages about no incident: posted to their channel, not to a thread.
CHANNEL_MESSAGES = frozenset({"rollout_changed", "promotion_requested", "promotion_updated"})

PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "user_not_in_channel",
        "invalid_arguments",
    }
)


def notice_text(payload: dict[str, Any]) -> str:
    """The plain words of a ``request_notice``."""
    notice = payload.get("notice")
    if notice in CLOSE_NOTICES:
        return close_answer(payload)
    if notice == NoticeKind.NO_OPEN_INCIDENT:
        return strings.NO_OPEN_INCIDENT
    if notice == NoticeKind.ABANDONED:
        attempts = payload.get("attempts")
        return strings.abandoned(
            str(payload.get("text") or ""), attempts if isinstance(attempts, int) else 0
        )
    return strings.refused(str(payload.get("message") or payload.get("code") or "refused"))


class SlackNotifier:
    """Delivers outbox messages with a Slack Web API client."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        control: ControlPlane,
        refs: Refs,
        rate_per_s: float = 1.0,
        links: TraceLinks | None = None,
        ops_channel: str | None = None,
    ) -> None:
        self._client = client
        self._ops_channel = ops_channel
        self._links = links
        self._control = control
        self._refs = refs
        self._rate = rate_per_s
        self._limiters: dict[str, AsyncLimiter] = {}
        self._memo: dict[str, SlackRef] = {}  # incident roots and cards: fixed once posted
        # Root redraws left to a later message of the pass, by incident (done at pass end if
        # that message did not go out).
        self._owed: dict[str, OutboxMessage] = {}

    async def pass_over(self, channel: str) -> None:
        """The relay's pass over ``channel`` ended: redraw the roots a later message of it was
        to redraw but did not (it was deferred or dropped)."""
        owed = [m for m in self._owed.values() if m.channel == channel]
        for message in owed:
            self._owed.pop(str(message.incident_id), None)
            try:
                await self._refresh_root(message, ())
            except Exception:  # the next root update of the incident redraws it
                log.exception("root_redraw_failed", incident_id=message.incident_id)

    async def deliver(
        self, message: OutboxMessage, *, later: Sequence[OutboxMessage] = ()
    ) -> Record | None:
        """Post or update the Slack message for one outbox row; returns the refs to keep."""
        if not message.channel:
            return None  # opened outside Slack (CLI, tests): nothing to post
        kept: list[SlackRef] = []  # refs of what is already posted, kept whatever follows
        try:
            await self._deliver(message, later, kept)
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else 0
            record = self._record(kept)
            if status == 429:
                retry_after = exc.response.headers.get("Retry-After", "1")
                raise DeliveryRetry(
                    "rate limited by Slack", after_s=float(retry_after), record=record
                ) from exc
            if error in PERMANENT:
                raise DeliveryDropped(
                    f"Slack refused {message.kind}: {error}", record=record
                ) from exc
            raise DeliveryRetry(f"Slack error {status} {error}", record=record) from exc
        except OSError as exc:  # connection refused, DNS, reset: Slack or the network is down
            raise DeliveryRetry(f"Slack unreachable: {exc}", record=self._record(kept)) from exc
        except asyncio.CancelledError:
            # Stopped after posting (shutdown): keep the refs, so the retry does not post again.
            if kept:
                record = self._record(kept)
                assert record is not None
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._refs.run(record))
            raise
        except Exception as exc:
            if kept:  # anything else: what was posted is still kept, then the relay defers
                raise DeliveryRetry(
                    f"{type(exc).__name__}: {exc}", record=self._record(kept)
                ) from exc
            raise
        return self._record(kept)

    def _record(self, kept: list[SlackRef]) -> Record | None:
        if not kept:
            return None
        refs = list(kept)

        def record(session: Any) -> None:
            for ref in refs:
                Refs.store(session, ref)

        return record

    def _remember(self, ref: SlackRef) -> None:
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[ref.key] = ref

    async def _fixed(self, key: str) -> SlackRef | None:
        """A ref whose channel, ts and payload never change once posted (a card, or a root's
        channel and ts): from memory, else from the database."""
        found = self._memo.get(key)
        if found is None:
            found = await self._refs.get(key)
            if found is not None:
                self._remember(found)
        return found

    def _linked(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with a fresh signed ``trace_url`` for its correlation id (when links are
        made: a public URL is configured)."""
        url = None
        if self._links is not None:
            url = self._links.url(payload.get("correlation_id"), self._control.clock.now())
        linked = {k: v for k, v in payload.items() if k != "trace_url"}
        if url is not None:
            linked["trace_url"] = url
        return linked

    async def _post(self, channel: str, **kwargs: Any) -> str:
        limiter = self._limiters.setdefault(channel, AsyncLimiter(1, 1 / self._rate))
        async with limiter:
            response = await self._client.chat_postMessage(channel=channel, **kwargs)
        return str(response["ts"])

    async def _thread(self, message: OutboxMessage) -> str:
        ref = await self._fixed(f"incident:{message.incident_id}")
        if ref is None:
            raise DeliveryRetry("the incident's root message is not posted yet")
        return ref.ts

    async def _deliver(
        self, message: OutboxMessage, later: Sequence[OutboxMessage], kept: list[SlackRef]
    ) -> None:
        def keep(key: str, ts: str, payload: dict[str, Any] | None = None) -> SlackRef:
            ref = SlackRef(key=key, channel=message.channel, ts=ts, payload=payload or {})
            kept.append(ref)
            return ref

        done = await self._refs.get(f"outbox:{message.id}") if message.attempts else None
        if done is not None and message.kind != "approval_updated":
            # Posted before a failed follow-up (a root update): do not post twice; the root
            # update is idempotent, so it is done again.
            if message.kind in ROOT_UPDATES:
                await self._refresh_root(message, later)
            return
        stored = dict(message.payload)  # kept without a link: each rendering signs a fresh one
        payload = self._linked(stored)
        kind = message.kind
        if message.incident_id is None and kind in CHANNEL_MESSAGES:
            ts = await self._channel_message(message, stored, payload)
            keep(f"outbox:{message.id}", ts)
            return
        if kind == "incident_opened":
            rendered = await asyncio.to_thread(render, kind, payload)
            ts = await self._post(message.channel, text=rendered.text, blocks=rendered.blocks)
            # The root's plan, so later updates show that plan's progress (not a recovery's).
            root = {**stored, "plan_id": message.plan_id, "incident_status": "open"}
            keep(f"incident:{message.incident_id}", ts, root)
            assert message.incident_id is not None
            await self._control.set_thread(message.incident_id, ts)
        elif kind == "vote_refused":
            rendered = await asyncio.to_thread(render, kind, payload)
            thread = await self._thread(message)
            await self._client.chat_postEphemeral(
                channel=message.channel,
                user=str(payload["voter"]),
                text=rendered.text,
                blocks=rendered.blocks,
                thread_ts=thread,
            )
            ts = "ephemeral"
        elif kind == "approval_requested":
            rendered = await asyncio.to_thread(render, kind, payload)
            thread = await self._thread(message)
            ts = await self._post(
                message.channel, text=rendered.text, blocks=rendered.blocks, thread_ts=thread
            )
            keep(f"approval:{payload['approval_id']}", ts, stored)
        elif kind == "approval_updated":
            ts = await self._update_card(payload)
        elif kind == NOTICE_KIND:
            ts = await self._notice(message, payload)
        else:
            rendered = await asyncio.to_thread(render, kind, payload)
            thread = await self._thread(message)
            ts = await self._post(
                message.channel, text=rendered.text, blocks=rendered.blocks, thread_ts=thread
            )
        keep(f"outbox:{message.id}", ts)
        if kind in ROOT_UPDATES:  # (never the root's own message: its ref is stored by now)
            await self._refresh_root(message, later)

    async def _channel_message(
        self, message: OutboxMessage, stored: dict[str, Any], payload: dict[str, Any]
    ) -> str:
        """A message of no incident: a stage change (ops channel) or a promotion card."""
        kind = message.kind
        channel = message.channel
        if channel == OPS_CHANNEL:
            if not self._ops_channel:
                log.info("rollout_change_not_posted", reason="no slack.ops_channel configured")
                return "no-ops-channel"
            channel = self._ops_channel
        if kind == "promotion_updated":
            ref = await self._refs.get(f"promotion:{payload['promotion_id']}")
            if ref is None:
                return "no-card"
            rendered = await asyncio.to_thread(
                render_promotion_card, self._linked(dict(ref.payload)), payload
            )
            await self._client.chat_update(
                channel=ref.channel, ts=ref.ts, text=rendered.text, blocks=rendered.blocks
            )
            return ref.ts
        rendered = await asyncio.to_thread(render, kind, payload)
        ts = await self._post(channel, text=rendered.text, blocks=rendered.blocks)
        if kind == "promotion_requested":
            await self._refs.put(
                f"promotion:{payload['promotion_id']}", channel=channel, ts=ts, payload=stored
            )
        return ts

    async def _notice(self, message: OutboxMessage, payload: dict[str, Any]) -> str:
        """A reply about a request: to its asker alone, or (an alert's) to the channel."""
        text = notice_text(payload)
        thread = None
        if message.incident_id is not None:
            ref = await self._refs.get(f"incident:{message.incident_id}")
            thread = ref.ts if ref is not None else None
        user = payload.get("user")
        if user:
            await self._client.chat_postEphemeral(
                channel=message.channel, user=str(user), text=text, thread_ts=thread
            )
            return "ephemeral"
        return await self._post(message.channel, text=text, thread_ts=thread)

    async def _update_card(self, update: dict[str, Any]) -> str:
        ref = await self._fixed(f"approval:{update['approval_id']}")
        if ref is None:
            return "no-card"  # the card was never posted (cancelled before delivery)
        card = self._linked(dict(ref.payload))
        rendered = await asyncio.to_thread(render_approval_card, card, update)
        await self._client.chat_update(
            channel=ref.channel, ts=ref.ts, text=rendered.text, blocks=rendered.blocks
        )
        return ref.ts

    async def _refresh_root(self, message: OutboxMessage, later: Sequence[OutboxMessage]) -> None:
        """Update the incident's root with its status and what became of each step so far
        (unless a later message of this pass redraws it)."""
        key = f"incident:{message.incident_id}"
        closing = message.kind in ("incident_resolved", "incident_cancelled")
        redrawn = any(
            m.incident_id == message.incident_id and m.kind in ROOT_UPDATES for m in later
        )
        if redrawn and not closing:
            self._owed[str(message.incident_id)] = message
            return
        ref = await self._refs.get(key)  # its payload changes when the incident closes
        if ref is None:
            return
        root = dict(ref.payload)
        if closing:
            root["incident_status"] = message.kind.removeprefix("incident_")
            await self._refs.put(key, channel=ref.channel, ts=ref.ts, payload=root)
            if redrawn:
                self._owed[str(message.incident_id)] = message
                return
        self._owed.pop(str(message.incident_id), None)
        progress = await self._progress(root, message)
        rendered = await asyncio.to_thread(
            render_incident_root,
            self._linked(root),
            str(root.get("incident_status") or "open"),
            progress,
        )
        # chat.update is outside Slack's one-message-per-second posting pace (like card
        # updates); a 429 retries the delivery, which then redoes only this update.
        await self._client.chat_update(
            channel=ref.channel, ts=ref.ts, text=rendered.text, blocks=rendered.blocks
        )

    async def _progress(
        self, root: dict[str, Any], message: OutboxMessage
    ) -> dict[str, Any] | None:
        """The root's plan as it stands, or None when it cannot be read (the proposal stays)."""
        plan_id = root.get("plan_id")
        try:
            if isinstance(plan_id, str):
                view = await self._control.plan_view(plan_id)
            else:  # a root posted before roots remembered their plan
                assert message.incident_id is not None
                view = await self._control.incident_plan(message.incident_id)
                if view.version != root.get("plan_version"):
                    return None
        except NotFound:
            return None
        return view.model_dump(mode="json")
