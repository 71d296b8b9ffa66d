"""`auth.test`: who the bot token belongs to."""

from __future__ import annotations

from typing import Any

from bot.sandbox.methods.base import Context, method
from bot.sandbox.workspace import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID


@method("auth.test")
def auth_test(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Identify the bot, as Slack does for a valid bot token."""
    return {
        "url": ctx.root_url,
        "team": "Sandbox",
        "user": "opsgate",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "is_enterprise_install": False,
    }
