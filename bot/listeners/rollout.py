"""Staged trust in Slack: ``/incident did``, ``/incident rollout [promote]``, promotion votes and
the baseline card's modal.

``did`` and ``promote`` write before the ack, so the ack says what was recorded; a replayed
request (same signature, seen by this process) records nothing more. A promotion click is
acknowledged after its vote is committed, like a step's.
"""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import strings
from bot.blocks.rollout import baseline_answer, baseline_modal, rollout_answer
from bot.ids import ActionId, BlockId, CallbackId
from bot.surface import Surface
from orchestration import closing
from orchestration.rollout.baseline import proposals
from orchestration.telemetry import get_logger

log = get_logger("opsgate.rollout")

WRITES = frozenset({"did", "rollout"})  # subcommands that record before their ack
ALREADY = "Already recorded (this request was sent before)."
OVERRIDE = "override:"


async def answer_did(
    surface: Surface, *, user: str, channel: str, rest: str, fresh: bool
) -> tuple[str, list[dict[str, Any]] | None]:
    """``/incident did [id] <what>``: record a human action on the incident."""
    ref, text = closing.split_ref(rest)
    if not text.strip():
        return strings.DID_USAGE, None
    if not fresh:
        return ALREADY, None
    try:
        done = await surface.control.rollout.record_did(
            actor=user, channel=channel, ref=ref, text=text.strip()
        )
    except Exception as exc:  # the database is down: promise nothing
        log.error("did_not_recorded", error=repr(exc))
        return strings.READ_FAILED, None
    surface.relay.wakeup.set()
    if done.recorded is None or done.incident_id is None:
        return done.text, None
    short = closing.short_id(done.incident_id)
    if done.recorded.taken_titles:
        step = done.recorded.taken_titles[0][:200]
        return strings.DID_RECORDED_STEP.format(ref=short, step=step), None
    other = done.recorded.other[0] if done.recorded.other else text.strip()
    return strings.DID_RECORDED_OTHER.format(ref=short, text=other[:200]), None


async def answer_rollout(
    surface: Surface, *, user: str, channel: str, rest: str, fresh: bool
) -> tuple[str, list[dict[str, Any]] | None]:
    """``/incident rollout``: the scopes; ``rollout promote <scope> [override: <why>]``."""
    words = rest.split(maxsplit=2)
    if not words or words[0].lower() == "status":
        try:
            rows = await surface.control.rollout.status()
        except Exception as exc:
            log.error("rollout_not_read", error=repr(exc))
            return strings.READ_FAILED, None
        return rollout_answer(rows, mode=surface.config.mode.value)
    if words[0].lower() != "promote" or len(words) < 2:
        return strings.ROLLOUT_USAGE, None
    if not fresh:
        return ALREADY, None
    scope = words[1]
    tail = words[2] if len(words) > 2 else ""
    lower = tail.lower()
    override = tail[lower.index(OVERRIDE) + len(OVERRIDE) :] if OVERRIDE in lower else ""
    try:
        asked = await surface.control.rollout.promote(
            scope=scope, actor=user, channel=channel, override=override.strip()
        )
    except Exception as exc:
        log.error("promotion_not_recorded", error=repr(exc))
        return strings.READ_FAILED, None
    surface.relay.wakeup.set()
    return asked.text, None


def register(app: AsyncApp, surface: Surface) -> None:
    """Attach the promotion buttons, the baseline button and the baseline modal."""

    async def vote(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, *, approve: bool
    ) -> None:
        action = body["actions"][0]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        try:
            voted = await surface.control.rollout.vote(
                nonce=str(action.get("value") or ""), voter=user, approve=approve
            )
        except Exception as exc:  # not recorded: say so, privately
            log.error("promotion_vote_failed", error=repr(exc))
            await ack()
            if channel:
                await client.chat_postEphemeral(
                    channel=channel, user=user, text=strings.VOTE_NOT_RECORDED
                )
            return
        await ack()  # after the commit: the vote survives a crash
        surface.relay.wakeup.set()
        if not voted.accepted and channel:
            await client.chat_postEphemeral(
                channel=channel,
                user=user,
                text=strings.PROMOTION_VOTE_REFUSED.format(reason=voted.reason),
            )

    @app.action(ActionId.APPROVE_PROMOTION.value)
    async def approve_promotion(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await vote(ack, body, client, approve=True)

    @app.action(ActionId.REJECT_PROMOTION.value)
    async def reject_promotion(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await vote(ack, body, client, approve=False)

    @app.action(ActionId.BASELINE_OPEN.value)
    async def open_baseline(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        incident_id = str(body["actions"][0].get("value") or "")
        trigger = body.get("trigger_id")
        if not trigger:
            return
        try:
            steps = await surface.control.db.run(lambda s: proposals(s, incident_id))
            items = [{"key": st.key, "title": st.title} for st in steps]
            await client.views_open(trigger_id=trigger, view=baseline_modal(incident_id, items))
        except Exception as exc:  # nothing recorded yet: the button can be clicked again
            log.warning("baseline_modal_failed", incident_id=incident_id, error=repr(exc))

    @app.view(CallbackId.BASELINE.value)
    async def submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        taken, other = baseline_answer(view)
        incident_id = str(view.get("private_metadata") or "")
        try:
            recorded = await surface.control.rollout.record_answer(
                incident_id=incident_id, actor=body["user"]["id"], taken=taken, other=other
            )
        except Exception as exc:  # keep the modal open with what was typed
            log.error("baseline_not_recorded", incident_id=incident_id, error=repr(exc))
            await ack(
                response_action="errors",
                errors={BlockId.BASELINE_OTHER.value: strings.REASON_NOT_RECORDED},
            )
            return
        if recorded is None:
            await ack(
                response_action="errors",
                errors={BlockId.BASELINE_OTHER.value: "This incident is not known here."},
            )
            return
        await ack()
        surface.relay.wakeup.set()
