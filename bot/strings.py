"""Every user-facing string of the Slack surface, in one place.

Templates use ``str.format`` fields and are mrkdwn: a literal ``<`` is written ``&lt;``. Values
are escaped for mrkdwn by ``bot.blocks`` before they are formatted in. Emoji are Unicode, not
``:shortcodes:``, so they render the same in Slack, the local sandbox and notifications.
"""

from typing import Final


def escape(value: object) -> str:
    """``value`` as text with mrkdwn's control characters (``& < >``) escaped."""
    try:
        text = "" if value is None else str(value)
    except ValueError:  # an int past Python's digit limit
        text = ELLIPSIS
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(value: object, limit: int = 500) -> str:
    text = " ".join(escape(value).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    return (cut[:amp] if amp != -1 and ";" not in cut[amp:] else cut) + "…"


ELLIPSIS: Final = "…"
NONE: Final = "—"
UNKNOWN_USER: Final = "someone"
LIST_SEP: Final = ", "
DOT: Final = " · "

# In-doubt steps: a process died while the call was in flight (orchestration.recovery).
IN_DOUBT_TITLE: Final = "⚠️ *In doubt:* {title}  `{tool}`"
IN_DOUBT_WHY: Final = (
    "Its replica stopped while the call was in flight, so nobody knows whether it took effect. "
    "Nothing will run it again by itself. Check the target, then say what happened."
)
IN_DOUBT_STARTED: Final = "*Started:* {when}"
IN_DOUBT_OWNER: Final = "*Ran on:* `{owner}`"
IN_DOUBT_LAST_SPAN: Final = "*Last recorded call:* {name} → {status} ({summary})"
IN_DOUBT_NO_SPAN: Final = "*Last recorded call:* none (the call in flight left no answer)"
IN_DOUBT_CHECK_OK: Final = "🔎 *{title}* (`{tool}`): {summary} — looks done"
IN_DOUBT_CHECK_BAD: Final = "🔎 *{title}* (`{tool}`): {summary} — does not look done"
IN_DOUBT_QUORUM: Final = "*Answers needed:* {answers}/{quorum}{excl}"
IN_DOUBT_KEY: Final = "Idempotency key `{key}`"
IN_DOUBT_RAN_BUTTON: Final = "It ran: go on"
IN_DOUBT_RERUN_BUTTON: Final = "Run it again"
IN_DOUBT_STOP_BUTTON: Final = "Stop the plan"
IN_DOUBT_FALLBACK: Final = "In doubt: {title}. Say whether it ran."
IN_DOUBT_VOTES: Final = "{choice}: {voters}"
IN_DOUBT_CHOICE: Final = {"ran": "It ran", "rerun": "Run again", "reject": "Stop"}
IN_DOUBT_SETTLED_RAN: Final = "✅ *Settled:* it ran, say {voters}; the plan goes on"
IN_DOUBT_SETTLED_RERUN: Final = "🔁 *Settled:* run it again, say {voters}"
IN_DOUBT_SETTLED_STOP: Final = "🛑 *Stopped* by {voter}{reason}; the step stays in doubt"
IN_DOUBT_SETTLED_OTHER: Final = "*{state}*{reason}"
IN_DOUBT_NOTICE: Final = (
    "⚠️ *In doubt:* {title}  `{tool}`: {why}. Its replica (`{owner}`) is gone, so nobody knows "
    "whether it took effect; check the target by hand."
)
IN_DOUBT_NOTICE_FALLBACK: Final = "In doubt: {title}"
STEP_RERUN: Final = (
    "🔁 *{title}* runs again here: its replica (`{owner}`) stopped mid-call, and a {why} step is "
    "safe to repeat under the same idempotency key."
)
STEP_RERUN_FALLBACK: Final = "Running {title} again"

# Recovery playbooks: what opsgate does about a known failure mode (orchestration.recovery).
RECOVERY_TITLE: Final = "🧰 *Recovery playbook:* {title} ({mode})"
RECOVERY_MODES: Final = {
    "tool_flaky": "a tool kept failing",
    "stale_context": "the plan's knowledge changed",
    "permission_error": "a call was not permitted",
    "in_doubt": "a step is in doubt",
    "compensation_failed": "undoing a step failed",
}
RECOVERY_FAILED_STEP: Final = "*After:* {step}  `{tool}`{code}"
RECOVERY_CODE: Final = " ({code})"
RECOVERY_MANUAL: Final = "*For you to do:*"
RECOVERY_MANUAL_ITEM: Final = "{n}. {text}"
RECOVERY_PLAN: Final = "*Recovery plan v{version}* (`{runbook}`), gated like any plan:"
RECOVERY_REPLAN: Final = "*Fresh plan v{version}* from the current runbook `{runbook}`:"
RECOVERY_STEP: Final = "{n}. {emoji} {title}  `{tool}` ({risk})"
RECOVERY_MORE: Final = "…and {count} more"
RECOVERY_SKIPPED: Final = "⚠️ *Nothing automated:* {reason}"
RECOVERY_PLAYBOOK: Final = "Playbook `{playbook}` v{version}"
RECOVERY_FALLBACK: Final = "Recovery playbook: {title} ({mode})"
STEP_CANCELLED: Final = "⏹️ *{title}* stopped  `{tool}`"

# Risk levels (common.Risk values) and their emoji.
RISK_EMOJI: Final = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}
RISK_UNKNOWN_EMOJI: Final = "⚪"
RISK: Final = "{risk} risk"
RISK_RAISED: Final = "{risk} risk (declared {declared})"

# Incident root message.
INCIDENT_HEADER: Final = "Incident: {text}"
INCIDENT_FALLBACK: Final = "Incident ({status}): {text}"
INCIDENT_STATUS: Final = {
    "open": "🔥 Open",
    "resolved": "✅ Resolved",
    "cancelled": "🚫 Cancelled",
}
FIELD_STATUS: Final = "*Status*\n{status}"
FIELD_REQUESTER: Final = "*Requester*\n{requester}"
FIELD_PLAN: Final = "*Plan*\n{title}"
FIELD_RUNBOOK: Final = "*Runbook*\n`{runbook}`{dot}plan v{version}{dot}hash `{hash}`"
PARAMS: Final = "*Params:* {params}"
STEPS_HEADING: Final = "*Steps*"
NO_STEPS: Final = "_No steps._"
STEP_LINE: Final = "{emoji} *{n}. {title}*  `{tool}`{dot}{risk}{dot}{policy}"
POLICY_ALLOW: Final = "runs automatically"
STAGE_LINE: Final = "      ↳ stage: {stage}"
ENDS_IF: Final = {
    "healthy": "; a healthy answer ends the plan",
    "unhealthy": "; an unhealthy answer ends the plan",
}
POLICY_APPROVALS: Final = "needs {quorum} approval{plural}{excl}: {reason}"
POLICY_NOT_REQUESTER: Final = ", not the requester"
POLICY_DENY: Final = "denied: {reason}"
POLICY_OTHER: Final = "{verdict}: {reason}"
# The root message as steps finish: the outcome replaces what the policy said it needs.
ROOT_STEP_STATUS: Final = {
    "pending": "⏳ not run yet",
    "awaiting_approval": "🙋 waiting for approval",
    "running": "▶️ running",
    "succeeded": "✅ succeeded",
    "failed": "❌ failed",
    "denied": "⛔ denied by policy",
    "rejected": "✋ rejected",
    "skipped": "⏭ skipped",
    "compensated": "↩️ undone",
    "cancelled": "⏹️ stopped",
    "in_doubt": "⚠️ in doubt",
}
ROOT_STEP_PROPOSED: Final = "👻 proposed, not run (shadow)"
OBSERVED_EMOJI: Final = "🩺"
ROOT_STEP_OBSERVED: Final = "🩺 {observed}"
ROOT_STEP_BY: Final = "{label} by {voter}"
ROOT_STEP_DETAIL: Final = "{label}: {detail}"
ROOT_COMPENSATION: Final = "↩️ Compensation *{title}*  `{tool}`{dot}{outcome}"
FIELD_OUTCOME: Final = "*Plan outcome*\n{status}{reason}"

# A probe's observation: whether the call worked, and what it says about the service.
ANSWERED_STATUS: Final = "answered {status}"
ANSWERED_EXIT: Final = "exited {code}"
ANSWERED_OK: Final = "answered"
OBSERVED_HEALTHY: Final = "{answer}: healthy"
OBSERVED_UNHEALTHY: Final = "{answer}: unhealthy{why}"
OBSERVED_WHY: Final = " ({why})"
MORE_STEPS: Final = "{emoji} …and {count} more steps (see `/incident status`)"
MORE_STEPS_EMOJI: Final = "➕"
FORECAST: Final = "💵 Forecast {forecast} of {budget} budget"
FORECAST_OVER: Final = "⚠️ Forecast {forecast} exceeds the {budget} budget"
FORECAST_NO_BUDGET: Final = "💵 Forecast {forecast} (no budget set)"
TRACE: Final = "trace `{trace}`"
TRACE_LINKED: Final = "trace `{trace}` <{url}|View trace>"
MORE_BLOCKS: Final = "…{count} more blocks not shown"

# Approval cards.
APPROVAL_STEP_TITLE: Final = "{emoji} *Approval needed: {title}*"
APPROVAL_DECIDED_TITLE: Final = "{emoji} *Step: {title}*"
APPROVAL_BUDGET_TITLE: Final = "💰 *Continue past the soft budget?*"
APPROVAL_FALLBACK_STEP: Final = "Approval needed: {title}"
SCOPE_CREDENTIAL: Final = (
    ":key: *Extend the Executor's scope for this plan:* credential `{name}` ({kind})"
)
SCOPE_READ_ONLY: Final = "read-only"
SCOPE_WRITES: Final = "can change state"
APPROVAL_FALLBACK_SCOPE: Final = "Approval needed: add credential {name} for {title}"
APPROVAL_FALLBACK_BUDGET: Final = "Approval needed: continue past the soft budget?"
FIELD_TOOL: Final = "*Tool and action*\n`{tool}`"
FIELD_RISK: Final = "*Risk*\n{emoji} {risk}"
FIELD_QUORUM: Final = "*Approvals*\n{approvals}/{quorum}{excl}"
QUORUM_NOT_REQUESTER: Final = " (not the requester)"
FIELD_EXPIRES: Final = "*Expires*\n{when}"
WHY: Final = "*Why:* {reason}"
ARGS: Final = "*Args*\n{code}"
EXPECT: Final = "*Expected outcome*\n{code}"
COMPENSATION: Final = "*Compensation:* {title}  `{tool}`\n{code}"
NO_COMPENSATION: Final = "*Compensation:* none declared"
COMPENSATION_DERIVED: Final = (
    "*Compensation:* {title}  `{tool}`\n_args taken from what the step records when it runs_"
)
PREVIEW_OK: Final = "🧪 *Dry run (server-side, nothing changed):* {summary}"
PREVIEW_FAILED: Final = "⚠️ *Dry run failed (nothing changed):* {summary}"
REQUESTED_BY: Final = "Requested by {requester}{dot}plan v{version}"
APPROVE_BUTTON: Final = "Approve"
REJECT_BUTTON: Final = "Reject"
NO_BUTTONS: Final = "⚠️ This card has no valid approval nonce; it cannot be voted on."
PROGRESS: Final = "*{approvals}/{quorum} approvals*: {voters}"
VOTE_REASON: Final = ": {reason}"
STATE_APPROVED: Final = "✅ *Approved* by {voters}"
STATE_REJECTED: Final = "❌ *Rejected* by {voter}{reason}"
STATE_EXPIRED: Final = "⌛ *Expired* before reaching quorum ({approvals}/{quorum})"
STATE_CANCELLED: Final = "🚫 *Cancelled*{reason}"
STATE_OTHER: Final = "*{state}*{reason}"
STATE_FALLBACK: Final = "Approval {state}: {title}"
BUDGET_TITLE: Final = "continue past the soft budget"

# Votes.
VOTE_REFUSED: Final = "🚫 {voter}, your vote was not counted: {reason}"
VOTE_REFUSED_FALLBACK: Final = "Your vote was not counted: {reason}"
VOTE_NOT_RECORDED: Final = (
    "⚠️ Your click did not count: opsgate could not record it just now. "
    "Nothing changed; try again in a moment."
)
REJECTION_REASON: Final = "✍️ {voter} gave a reason for rejecting *{title}*: {reason}"
REJECTION_REASON_FALLBACK: Final = "Reason for rejecting {title}: {reason}"
CODE: Final = "code `{code}`"

# Step results.
STEP_SUCCEEDED: Final = "✅ *{title}* succeeded  `{tool}`"
STEP_FAILED: Final = "❌ *{title}* failed  `{tool}`"
COMP_SUCCEEDED: Final = "↩️ Compensation *{title}* succeeded  `{tool}`"
COMP_FAILED: Final = "❌ Compensation *{title}* failed  `{tool}`"
STEP_OBSERVED: Final = {
    "healthy": "🩺 *{title}*  `{tool}`: the call worked, and the service is *healthy*",
    "unhealthy": "🩺 *{title}*  `{tool}`: the call worked, and the service is *unhealthy*",
}
OBSERVED: Final = "*Observed:* {observed}"
STEP_OTHER: Final = "• *{title}* {status}  `{tool}`"
STEP_FALLBACK: Final = "Step {status}: {title}"
RESULT: Final = "*Result:* {summary}"
ERROR: Final = "*Error*{code}: {error}"
ERROR_CODE: Final = " (`{code}`)"
NEXT_AFTER_FAILURE: Final = (
    "Retries are used up ({attempts} attempt{plural}). "
    "opsgate will run the declared compensation, then escalate to humans."
)
NEXT_AFTER_COMP_FAILURE: Final = "The compensation failed: opsgate escalates to humans."
DURATION: Final = "⏱ {duration}"
COST: Final = "💵 +{cost}"
SPENT: Final = "total {spent} of {budget} budget"
SPENT_NO_BUDGET: Final = "total {spent}"
ATTEMPTS: Final = "attempts {attempts}"

STEP_DENIED: Final = "⛔ *Policy denied {title}*  `{tool}`\n{reason}"
STEP_DENIED_FALLBACK: Final = "Policy denied: {title}"
PLAN_BLOCKED: Final = "⛔ *The plan was blocked before it started*\n{reason}"
PLAN_BLOCKED_FALLBACK: Final = "Plan blocked: {reason}"
FORECAST_ONLY: Final = "💵 Forecast {forecast}"

PLAN_STATUS: Final = {
    "proposed": "📝 Proposed",
    "running": "▶️ Running",
    "waiting": "⏳ Waiting for humans",
    "succeeded": "✅ Succeeded",
    "failed": "❌ Failed",
    "halted": "✋ Halted",
    "stale": "🕰 Stale (knowledge changed)",
    "cancelled": "🚫 Cancelled",
    "blocked": "⛔ Blocked",
    "shadow": "👻 Shadow (proposed; no change made)",
}
# A plan a probe ended (code ``nothing_to_do``): it succeeded by finding nothing to fix.
PLAN_NOTHING_TO_DO: Final = "✅ Nothing to do"
PLAN_FINISHED: Final = "*Plan finished: {status}*\n{reason}"
PLAN_FINISHED_FALLBACK: Final = "Plan finished: {status}"

ESCALATION: Final = "<!here> 🚨 *Humans need to take over.* {reason}"
ESCALATION_FALLBACK: Final = "<!here> Escalation: humans need to take over. {reason}"

INCIDENT_CLOSED: Final = {
    "incident_resolved": "✅ *Incident resolved* by {actor}{reason}",
    "incident_cancelled": "🚫 *Incident cancelled* by {actor}{reason}",
}
INCIDENT_CLOSED_FALLBACK: Final = {
    "incident_resolved": "Incident resolved",
    "incident_cancelled": "Incident cancelled",
}

ALERT_CHANGED: Final = {
    "firing": "🔥 *{name}* firing: {text}",
    "resolved": "✅ *{name}* resolved: {text}",
}
ALERTS_CHANGED_TALLY: Final = "Alert group: {firing} firing, {resolved} resolved"
ALERTS_CHANGED_FALLBACK: Final = "Alerts changed: {firing} firing, {resolved} resolved"

UNKNOWN_KIND: Final = "opsgate event `{kind}`"
UNKNOWN_KIND_FALLBACK: Final = "opsgate event: {kind}"

# Slash command replies.
HELP_TITLE: Final = "*opsgate — incident response with approvals*"
HELP_COMMANDS: Final = (
    ("/incident <text>", "open an incident and propose a plan"),
    ("/incident help", "show this help"),
    ("/incident status [id]", "list the channel's open incidents, or show one's plan"),
    (
        "/incident resolve [id] [reason]",
        "mark the incident resolved (or @opsgate resolve in its thread)",
    ),
    (
        "/incident cancel [id] [reason]",
        "cancel the incident and stop its plan (or @opsgate cancel)",
    ),
    ("/incident metrics", "operational metrics of the last 24 hours and 7 days (only you see it)"),
    (
        "/incident replay [id] [--fail-at STEP[:error|timeout|status=CODE]]",
        "re-run the plan in a sandbox, a failure forced, beside the original (in its thread)",
    ),
    ("/incident audit [id]", "who asked, approved and ran what, with costs (in its thread)"),
    ("/incident did [id] <what>", "record what you did (the baseline shadow mode is judged by)"),
    (
        "/incident rollout [promote <scope> [override: <why>]]",
        "each scope's stage and evidence; ask approvers to promote one",
    ),
)
HELP_LINE: Final = "`{command}` — {what}"
HELP: Final = (
    "opsgate /incident commands: &lt;text&gt;, help, status, resolve, cancel, metrics, "
    "replay, audit, did, rollout"
)
UNKNOWN_SUB: Final = "🤔 `/incident {sub}` is not a command. Try one of these:"
UNKNOWN_SUB_FALLBACK: Final = "Unknown /incident command: {sub}"

STATUS_HEADER: Final = "Plan status"
STATUS_SUMMARY: Final = "*{status}*{dot}runbook `{runbook}`{dot}plan v{version}{dot}{spent}"
STATUS_REASON: Final = "_{reason}_"
STATUS_STEP: Final = "{emoji} *{n}. {title}*  `{tool}`{dot}{status}{detail}"
STATUS_REJECTED_BY: Final = " by {voter}"
STATUS_SCOPE: Final = "\n      holds `{action}`{credentials} until {until}"
STATUS_SCOPE_CREDENTIALS: Final = " with credential {names}"
STATUS_SCOPE_MINTED: Final = (
    "\n      token of service account `{account}` minted for it, until {until}"
)
STATUS_FALLBACK: Final = "Plan {status}: {done}/{total} steps done"
BREAKERS_HEADING: Final = "*Circuit breakers* (calls to these targets are paused)"
BREAKER_OPEN: Final = "🔴 `{key}` open since {since}, probe in {wait} s"
BREAKER_OPEN_DUE: Final = "🔴 `{key}` open since {since}, probe due now"
BREAKER_PROBING: Final = "🟡 `{key}` half-open, probe running"
BREAKER_HALF_OPEN: Final = "🟡 `{key}` half-open, probe due now"
MORE_BREAKERS: Final = "…and {count} more circuit breakers"
STEP_STATUS_EMOJI: Final = {
    "pending": "⏳",
    "awaiting_approval": "🙋",
    "running": "▶️",
    "succeeded": "✅",
    "failed": "❌",
    "denied": "⛔",
    "rejected": "✋",
    "skipped": "⏭",
    "compensated": "↩️",
}
STEP_STATUS_UNKNOWN_EMOJI: Final = "•"

REJECT_MODAL_TITLE: Final = "Step rejected"
REJECT_MODAL_SUBMIT: Final = "Add reason"
REJECT_MODAL_CLOSE: Final = "Skip"
REJECT_MODAL_INTRO: Final = (
    "Your rejection counts: the step will not run and the plan is halted. "
    "Say why, for the audit trail (optional)."
)
REASON_NOT_RECORDED: Final = "opsgate could not save your reason just now; try again."
REJECT_MODAL_LABEL: Final = "Reason"
REJECT_MODAL_PLACEHOLDER: Final = "e.g. wrong service, do it after the deploy"

# Daily digest and /incident metrics.
NA: Final = "n/a"
DIGEST_HEADER: Final = "📊 opsgate daily digest · {day}"
DIGEST_FALLBACK: Final = (
    "opsgate digest for {day}: spent {spend}; {plans} plan{plural} finished; "
    "action success {success}"
)
DIGEST_SPEND: Final = (
    "*Spend* {usd}{dot}{tokens} tokens{dot}{opened} incident{plural} opened, {resolved} resolved"
)
DIGEST_VS_WEEK: Final = "7-day average {avg}/day{dot}{change}"
DIGEST_NO_AVERAGE: Final = "no spend in the 7 days"
DIGEST_CHANGE: Final = "{sign}{pct:.0f}% vs average"
FIELD_BY: Final = "*{what}*\n{lines}"
BY_ROLE: Final = "By role"
BY_TOOL: Final = "By tool"
BY_RUNBOOK: Final = "By runbook"
BY_CHANNEL: Final = "By channel"
WEEK_BY_ROLE: Final = "7 days by role"
WEEK_BY_TOOL: Final = "7 days by tool"
WEEK_BY_RUNBOOK: Final = "7 days by runbook"
AMOUNT_LINE: Final = "`{key}` {usd} ({share})"
AMOUNT_MORE: Final = "…and {count} more"
NO_SPEND: Final = "_no spend_"
TREND_HEADING: Final = "*7-day trend*{dot}{total} in 7 days"
COSTLIEST_HEADING: Final = "*Costliest plans*"
COSTLY_LINE: Final = "{n}. {usd}{dot}`{runbook}`{dot}{status}{dot}_{text}_ (plan `{plan}`)"
NO_PLANS: Final = "_No plan spent anything._"
BUDGET_HEADING: Final = "*Budget*{dot}⚠️ {warnings} warning{wplural}{dot}⛔ {stops} stop{splural}"
BUDGET_KIND: Final = {
    "warning": "⚠️ soft limit",
    "stop": "⛔ hard limit",
    "blocked": "⛔ blocked by forecast",
}
BUDGET_LINE: Final = "{kind}{dot}`{runbook}` plan `{plan}`: {reason}"
BUDGET_NONE: Final = "_No budget warnings or stops._"
OPS_HEADING: Final = "*Operations*"
OPS_MTTR: Final = "*Mean time to resolve*\n{value} ({count} resolved)"
OPS_SUCCESS: Final = "*Action success*\n{value} ({ok}/{total} actions)"
OPS_ESCALATION: Final = (
    "*Humans took over*\n{value} ({count}/{total} plans halted, denied, failed, in doubt "
    "or timed out; a designed approval is not counted)"
)
OPS_COST_PER: Final = "*Cost per successful action*\n{value}"
OPS_FALSE_POSITIVE: Final = "*False positives*\n{value} ({count}/{total} changes)"
OPS_LEAD_TIME: Final = "*Change lead time*\n{value} ({total} plans)"
OPS_CACHE: Final = "*Cache hit rate*\n{value} ({hits}/{lookups} lookups)"
OPS_SPEND: Final = "*Spend*\n{usd}{dot}{tokens} tokens"
PEOPLE_TIME: Final = (
    "*People time* (card posted to vote): {time} over {votes} vote(s), {usd} at {rate}/h"
)
OPS_PLANNERS: Final = (
    "*Plans by the LLM Planner*\n{value} ({llm} of {total}; the rest from runbooks)"
)
OPS_MODEL_TOKENS: Final = "*Model tokens* (role · model)\n{lines}"
OPS_MODEL_LINE: Final = "{role} · {model}: {tokens} tokens · {usd} · {calls} call(s)"
OPS_MODEL_MORE: Final = "… and {count} more"
OPS_MODEL_CALLS: Final = "Calls: {outcomes}"
DIGEST_FOOTER: Final = (
    "{start} → {end} ({tz}){dot}outcome figures count plans that finished in the window"
    "{dot}n/a: nothing to measure"
)
METRICS_FOOTER: Final = (
    "Outcome figures count plans that finished in the window{dot}n/a: nothing to measure"
)
DIGEST_CHART_TITLE: Final = "Spend by tool, 7 days to {day}"
DIGEST_CHART_COMMENT: Final = "📈 Spend by tool, 7 days to {day}"
METRICS_HEADER: Final = "📈 opsgate metrics"
METRICS_WINDOW: Final = "*{label}*{dot}{start} → {end}"
METRICS_DAY: Final = "Last 24 hours"
METRICS_WEEK: Final = "Last 7 days"
METRICS_FALLBACK: Final = (
    "opsgate metrics, last 24 h: spent {spend}, action success {success}, MTTR {mttr}"
)

# Immediate slash-command acknowledgements (plain mrkdwn text, ephemeral).
NO_OPEN_INCIDENT: Final = (
    "There is no open incident in this channel. Open one with `/incident &lt;text&gt;`."
)


def refused(message: str) -> str:
    """Why opsgate did not open an incident, in the control plane's words."""
    return f"🚫 opsgate did not open an incident: {_quote(message, 1000)}"


# Replies about a recorded request whose work did not (yet) happen.
NOT_RECORDED: Final = (
    "⚠️ opsgate could not record your request (its database did not answer), so nothing will "
    "happen. Please try again in a minute."
)
REQUEST_DELAYED: Final = (
    "⏳ opsgate has your request but could not act on it yet (its database did not answer). "
    "It will keep trying by itself, and tell you here if it gives up."
)


def abandoned(text: str, attempts: int) -> str:
    """A recorded request opsgate gave up on: nothing was done."""
    what = f" {_quote(text)}" if text else ""
    return (
        f"⚠️ opsgate could not act on the request{what} after {attempts} attempts and has "
        "stopped trying. Nothing was done: try again, or act by hand."
    )


# Resolve, cancel and status scoped to one incident (bot.blocks.incidents renders them).
INCIDENT_REF: Final = "`{short}` ({text})"
CLOSING: Final = {
    "resolve": "✅ Resolving incident {incident}.",
    "cancel": "🚫 Cancelling incident {incident}; its plan stops.",
}
CLOSE_VERB: Final = {"resolve": "resolve", "cancel": "cancel"}
CLOSE_REFUSED: Final = "🚫 You cannot {action} incident {incident}: {reason}"
ALREADY_CLOSED: Final = "Incident {incident} is already {status}; nothing changed."
NO_SUCH_INCIDENT: Final = "There is no incident `{ref}`. `/incident status` lists the open ones."
NOT_AN_INCIDENT_THREAD: Final = (
    "This thread is not an incident's thread. Name the incident: `/incident {action} <id>`."
)
WHICH_INCIDENT: Final = "This channel has {count} open incidents; say which one:"
WHICH_ID: Final = "{count} incidents start with `{ref}`; type more of the id:"
WHICH_LINE: Final = "• `/incident {action} {short}` — {text}"
OPEN_LIST_HEADING: Final = "*{count} open incidents in this channel*"
OPEN_LIST_LINE: Final = "• `{short}` — {text}{dot}{status}{dot}opened {when}"
OPEN_LIST_MORE: Final = "…and more: resolve some, or ask `/incident status <id>`"
OPEN_LIST_HINT: Final = "`/incident status <id>` shows one incident's plan."
STATUS_INCIDENT: Final = "*Incident {incident}*{dot}{status}"
READ_FAILED: Final = (
    "⚠️ opsgate could not read its database just now, so it cannot answer. Nothing changed; "
    "try again in a minute."
)
METRICS_WORKING: Final = (
    "📈 Counting the last 24 hours and 7 days; the figures follow, only to you."
)
MENTION_HELP: Final = (
    "In an incident's thread, mention me with `resolve [reason]` or `cancel [reason]`; "
    "`/incident help` lists the rest."
)


def opening_plan(text: str, title: str) -> str:
    """The instant reply to ``/incident <text>`` once intake and a runbook accepted it."""
    return (
        f"🔥 Opening an incident: {_quote(text)}. Runbook *{_quote(title, 200)}* matches; "
        "its plan follows in this channel."
    )


# Debugging after the fact: /incident replay and /incident audit.
REPLAY_STARTED: Final = (
    "🔁 Replaying plan `{plan}` of incident `{incident}` in a sandbox{forced}; "
    "the comparison goes to the incident's thread. Nothing live changes."
)
REPLAY_FORCED: Final = " with `--fail-at {fail_at}`"
REPLAY_HEADER: Final = "Replay beside the original run"
REPLAY_SUMMARY: Final = (
    "Plan `{plan}`{dot}runbook `{runbook}`{dot}plan v{version}{dot}forced failure: {forced}\n"
    "Knowledge from the store: {pins}{dot}plan hash {hash} {reproduced}"
)
REPLAY_REPRODUCED: Final = {True: "reproduced", False: "NOT reproduced", None: "not checked"}
REPLAY_STEP: Final = "*{key}* {title}{differs}\n    original: {original}\n    replay: {replay}"
REPLAY_DIFFERS: Final = "  ⚠️"
REPLAY_OUTCOME: Final = "{emoji} {status}, {attempts} attempt(s) [{calls}]{error}"
REPLAY_PLAN: Final = (
    "*Plan*: original {before} → replay {after}\n*Compensation*: {compensation}\n"
    "*Escalation*: {escalation}\n*Budget*: original {spent_before} → replay {spent_after}"
    " of {budget}"
)
REPLAY_NO_COMPENSATION: Final = "none planned (nothing to undo)"
REPLAY_NO_ESCALATION: Final = "no"
REPLAY_DIFFERENCES: Final = "*What differs*"
REPLAY_SAME: Final = "Nothing: the replay ran as the original did."
REPLAY_MISSING: Final = "*Missing recorded responses* (answered as failures): {calls}"
REPLAY_FOOTER: Final = "Ran in a temporary copy of the store; nothing live was called or changed."
REPLAY_FALLBACK: Final = "Replay of plan {plan}: original {before}, replay {after}"
REPLAY_FAILED: Final = "⚠️ The replay could not run: {reason}"
DEBUG_WHICH: Final = (
    "Which incident? Give its id: `/incident {sub} &lt;id&gt;` "
    "(`/incident status` lists the open ones)."
)
AUDIT_STARTED: Final = (
    "🧾 The audit timeline of incident `{incident}` goes to its thread ({count} records)."
)
AUDIT_HEADER: Final = "Audit timeline"
AUDIT_LINE: Final = "`{at}` *{event}* by {actor} ({role}){step}{detail}"
AUDIT_MORE: Final = "…and {count} more records: `opsgate audit {ref}` prints them all"
AUDIT_FALLBACK: Final = "Audit timeline of incident {incident}: {count} records"
DEBUG_AMBIGUOUS: Final = "That id names more than one incident; give more characters."
DEBUG_NOT_IN_THREAD: Final = (
    "Mention me with `{sub}` in an incident's thread, or type `/incident {sub} &lt;id&gt;`."
)


# --- the LLM agents (bot/blocks/agents.py) ---------------------------------------------------
FIELD_PLANNER: Final = "*Planner*\n{planner}"
PLANNER_RUNBOOK: Final = "runbook matcher"
PLANNER_LLM: Final = "LLM Planner (`{model}`, prompt v{prompt}){confidence}"
PLANNER_CONFIDENCE: Final = ", stated confidence {confidence:.0%}"
LLM_COST: Final = "Agents: {tokens:,} tokens ({cached:,} cached) · {usd} · {calls} model calls"
FINDINGS_HEADING: Final = ":mag: *Researcher findings*"
FINDING_LINE: Final = "• {text}{span}"
FINDING_SPAN: Final = " (span `{span}`)"
NO_FINDINGS: Final = "• The Researcher found nothing worth reporting."
RESEARCH_REFUSED: Final = "• :no_entry: refused `{action}`: {reason}"
RATIONALES_HEADING: Final = ":brain: *Why these steps* (the LLM Planner's rationale)"
RATIONALE_LINE: Final = "• `{key}`: {rationale}"
IGNORED_CLAIM: Final = ":warning: {claim}"
AGENT_NOTE: Final = ":information_source: {note}"
AGENT_TOKENS: Final = "{role}: {tokens:,} tokens, {usd}"
AGENT_BUDGET: Final = "Plan budget: {budget:,} tokens · {budget_usd}"
FINDINGS_FALLBACK: Final = "Researcher findings and the LLM Planner's rationale"

# --- staged trust (rollout) -------------------------------------------------------------------
ROLLOUT_CHANGED: Final = {
    "rollout_demoted": "⬇️ *Rollout: {scope} demoted from {from_stage} to {to_stage}.* {reason}",
    "rollout_promoted": "⬆️ *Rollout: {scope} promoted from {from_stage} to {to_stage}.* {reason}",
}
ROLLOUT_CHANGED_FALLBACK: Final = "Rollout: {scope} is now {to_stage}. {reason}"
PROMOTION_TITLE: Final = "⬆️ *Promote {scope} from {from_stage} to {to_stage}?*\n{covers}"
PROMOTION_ASKED: Final = (
    "Asked by {requester}; needs {quorum} approvals from configured approvers, not the requester's."
)
PROMOTION_CRITERIA: Final = "*Exit criteria of {from_stage}:*\n{lines}"
PROMOTION_OVERRIDE: Final = (
    "⚠️ *Criteria unmet; the requester asks to override:* {reason}\nApproving overrides them."
)
PROMOTION_FALLBACK: Final = "Promote {scope} from {from_stage} to {to_stage}?"
PROMOTION_STATE: Final = {
    "open": "{approvals} of {quorum} approvals: {voters}",
    "approved": "✅ Approved: {reason}",
    "rejected": "✋ Rejected: {reason}",
    "refused": "⛔ Not promoted: {reason}",
    "expired": "⌛ Expired: {reason}",
}
PROMOTION_STATE_FALLBACK: Final = "Promotion {state}"
BASELINE_CARD: Final = (
    "👻 {resolver}, part of this incident's plan was in shadow: opsgate proposed, and did "
    "not run, what is listed below. "
    "What did you do? Your answer is the baseline opsgate's proposals are measured against."
)
BASELINE_PROPOSED: Final = "*opsgate proposed:*\n{lines}"
BASELINE_NOTHING_PROPOSED: Final = (
    "opsgate proposed no change (its plan ended before the shadow steps)."
)
BASELINE_BUTTON: Final = "Record what you did"
BASELINE_FALLBACK: Final = "What did you do about this incident? opsgate ran in shadow."
BASELINE_MODAL_TITLE: Final = "What did you do?"
BASELINE_MODAL_SUBMIT: Final = "Record"
BASELINE_MODAL_TAKEN: Final = "Which proposed steps did you take?"
BASELINE_MODAL_OTHER: Final = "Did you do anything else? (one change a line)"
BASELINE_MODAL_OTHER_HINT: Final = "Changes opsgate did not propose count against it: be complete."
BASELINE_RECORDED: Final = "📝 Baseline recorded by {actor}: {what}"
BASELINE_TOOK: Final = "took {steps}"
BASELINE_ALSO: Final = "also did: {other}"
BASELINE_NOTHING: Final = "no change"
DID_USAGE: Final = (
    "Say what you did: `/incident did restart checkout-api` "
    "(name a proposed step to count it as taken)."
)
DID_RECORDED_STEP: Final = "Recorded on incident `{ref}`: you took the proposed step '{step}'."
DID_RECORDED_OTHER: Final = (
    "Recorded on incident `{ref}`: '{text}', a change opsgate did not propose."
)
ROLLOUT_USAGE: Final = (
    "`/incident rollout` shows each scope's stage and evidence; "
    "`/incident rollout promote <scope> [override: <why>]` asks approvers to promote it."
)
ROLLOUT_NONE: Final = (
    "No rollout scopes are configured: every step runs in the global mode ({mode})."
)
ROLLOUT_SCOPE: Final = "*{scope}* `{stage}` {covers}\n{lines}"
PROMOTE_BUTTON: Final = "Approve promotion"
PROMOTE_REJECT_BUTTON: Final = "Reject"
PROMOTION_VOTE_REFUSED: Final = "Your click did not count: {reason}"
ROLLOUT_HEADING: Final = "*Staged trust* (each scope since its stage began)"
