"""``agent_findings``: what the Researcher found (each line naming the span with the raw
result), why the LLM Planner chose its steps, and what the agents' tokens cost."""

from collections.abc import Mapping

from slack_sdk.models.blocks import Block

from bot import strings as s
from bot.blocks.layout import context, finish, section
from bot.blocks.model import Payload, Rendered, as_float, as_int, mappings
from bot.blocks.text import esc, trace_text, usd

MAX_LINES = 8


def planner_field(payload: Payload) -> str | None:
    """The root's *Planner* field: which planner made the plan (None for older payloads)."""
    planner = payload.get("planner")
    if planner is None:
        return None
    if planner != "llm":
        return s.FIELD_PLANNER.format(planner=s.PLANNER_RUNBOOK)
    llm = payload.get("llm")
    llm = llm if isinstance(llm, Mapping) else {}
    confidence = as_float(llm.get("confidence"))
    return s.FIELD_PLANNER.format(
        planner=s.PLANNER_LLM.format(
            model=esc(llm.get("model"), 80),
            prompt=as_int(llm.get("prompt_version"), 1),
            confidence=s.PLANNER_CONFIDENCE.format(confidence=confidence)
            if confidence is not None
            else "",
        )
    )


def llm_cost_line(llm: object) -> str:
    """Tokens, cached tokens, USD and calls of an agent run, in one line ("" without one)."""
    if not isinstance(llm, Mapping):
        return ""
    return s.LLM_COST.format(
        tokens=as_int(llm.get("tokens"), 0),
        cached=as_int(llm.get("cached_tokens"), 0),
        usd=usd(llm.get("usd")),
        calls=as_int(llm.get("calls"), 0),
    )


def render_agent_findings(payload: Payload) -> Rendered:
    """The findings, refusals and rationale of one agent run, with its token costs."""
    lines = [s.FINDINGS_HEADING]
    findings = mappings(payload.get("findings"))
    for item in findings[:MAX_LINES]:
        span = item.get("span_id")
        lines.append(
            s.FINDING_LINE.format(
                text=esc(item.get("text"), 300),
                span=s.FINDING_SPAN.format(span=esc(span, 40)) if span else "",
            )
        )
    if not findings:
        lines.append(s.NO_FINDINGS)
    for item in mappings(payload.get("refused"))[:MAX_LINES]:
        lines.append(
            s.RESEARCH_REFUSED.format(
                action=esc(item.get("tool_action"), 100), reason=esc(item.get("reason"), 300)
            )
        )
    blocks: list[Block] = [section("\n".join(lines))]
    rationales = payload.get("rationales")
    if isinstance(rationales, Mapping) and rationales:
        why = [s.RATIONALES_HEADING]
        why += [
            s.RATIONALE_LINE.format(key=esc(k, 40), rationale=esc(v, 200))
            for k, v in list(rationales.items())[:MAX_LINES]
        ]
        blocks.append(section("\n".join(why)))
    notes = [s.IGNORED_CLAIM.format(claim=esc(c, 200)) for c in payload.get("ignored_claims") or []]
    notes += [s.AGENT_NOTE.format(note=esc(n, 300)) for n in payload.get("notes") or []]
    if notes:
        blocks.append(context(*notes[:MAX_LINES]))
    llm = payload.get("llm")
    roles = llm.get("by_role") if isinstance(llm, Mapping) else None
    per_role = [
        s.AGENT_TOKENS.format(
            role=esc(role, 40), tokens=as_int(row.get("tokens"), 0), usd=usd(row.get("usd"))
        )
        for role, row in (roles.items() if isinstance(roles, Mapping) else ())
        if isinstance(row, Mapping)
    ]
    budget = s.AGENT_BUDGET.format(
        budget=as_int(payload.get("budget_tokens"), 0), budget_usd=usd(payload.get("budget_usd"))
    )
    blocks.append(context(llm_cost_line(llm), *per_role, budget, trace_text(payload)))
    return finish(s.FINDINGS_FALLBACK, blocks)
