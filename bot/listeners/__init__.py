"""Bolt listeners, one module per Slack surface: commands, actions, views, events."""

from slack_bolt.async_app import AsyncApp

from bot.ids import ActionId, CallbackId
from bot.listeners import actions, commands, events, indoubt, rollout, views
from bot.surface import Surface

LISTENED = {
    "commands": (commands.COMMAND,),
    "events": events.EVENTS,
    "actions": (
        ActionId.APPROVE.value,
        ActionId.REJECT.value,
        *(action_id.value for action_id in indoubt.ANSWERS),
        ActionId.APPROVE_PROMOTION.value,
        ActionId.REJECT_PROMOTION.value,
        ActionId.BASELINE_OPEN.value,
    ),
    "views": (CallbackId.REJECT_REASON.value, CallbackId.BASELINE.value),
}


def register(app: AsyncApp, surface: Surface) -> commands.IncidentCommand:
    """Attach every listener to ``app``; the ``/incident`` command, which HTTP answers directly."""
    incident = commands.register(app, surface)
    actions.register(app, surface)
    indoubt.register(app, surface)
    views.register(app, surface)
    rollout.register(app, surface)
    events.register(app, surface)
    return incident
