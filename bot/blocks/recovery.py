"""The thread message of a recovery playbook: what failed, what to do by hand, what runs."""

from collections.abc import Mapping

from slack_sdk.models.blocks import Block

from bot import strings as s
from bot.blocks.layout import context, finish, packed, section
from bot.blocks.model import Payload, Rendered, as_int, mappings
from bot.blocks.text import actors, esc, esc_reason, risk_badge, trace_text


def _more(count: int) -> str:
    return s.RECOVERY_MORE.format(count=count)


def render_recovery_playbook(payload: Payload) -> Rendered:
    """``recovery_playbook``: the playbook applied to a failure, its manual steps, its plan."""
    title = esc(payload.get("title"), 200)
    raw_mode = str(payload.get("mode") or "")
    mode = s.RECOVERY_MODES.get(raw_mode) or esc(raw_mode or None, 60)
    lines = [s.RECOVERY_TITLE.format(title=title, mode=mode)]
    if payload.get("step_title") or payload.get("tool_action"):
        code = payload.get("error_code")
        lines.append(
            s.RECOVERY_FAILED_STEP.format(
                step=esc(payload.get("step_title"), 300),
                tool=esc(payload.get("tool_action"), 100),
                code=s.RECOVERY_CODE.format(code=esc(code, 100)) if code else "",
            )
        )
    blocks: list[Block] = [section("\n".join(lines))]
    manual = payload.get("manual")
    items = [m for m in manual if isinstance(m, str)] if isinstance(manual, list) else []
    if items:
        numbered = [s.RECOVERY_MANUAL_ITEM.format(n=n, text=esc(m)) for n, m in enumerate(items, 1)]
        blocks += packed(numbered, heading=s.RECOVERY_MANUAL, more=_more)
    plan = payload.get("plan")
    if isinstance(plan, Mapping):
        template = s.RECOVERY_REPLAN if payload.get("replan") else s.RECOVERY_PLAN
        heading = template.format(
            version=as_int(plan.get("plan_version"), 0), runbook=esc(plan.get("runbook_id"), 100)
        )
        steps = []
        for n, step in enumerate(mappings(plan.get("steps")), 1):
            emoji, risk = risk_badge(step.get("risk"))
            steps.append(
                s.RECOVERY_STEP.format(
                    n=n,
                    emoji=emoji,
                    title=esc(step.get("title"), 300),
                    tool=esc(step.get("tool_action"), 100),
                    risk=risk,
                )
            )
        blocks += packed(steps, heading=heading, more=_more)
    if payload.get("skipped"):
        blocks.append(
            section(
                s.RECOVERY_SKIPPED.format(
                    reason=esc_reason(payload.get("skipped"), people=actors(payload))
                )
            )
        )
    playbook = s.RECOVERY_PLAYBOOK.format(
        playbook=esc(payload.get("playbook_id"), 100), version=as_int(payload.get("version"), 0)
    )
    blocks.append(context(playbook, trace_text(payload)))
    return finish(s.RECOVERY_FALLBACK.format(title=title, mode=mode), blocks)
