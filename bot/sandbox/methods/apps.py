"""`apps.connections.open`: a Socket Mode WebSocket URL on the fake's own server.

Only an app-level token (`xapp-...`) may call it; `FakeSlack` checks the token kind for every
method named in `APP_LEVEL_METHODS` before the handler runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from bot.sandbox.methods.base import Context, method
from bot.sandbox.workspace import APP_ID

APP_LEVEL_METHODS = frozenset({"apps.connections.open"})
SOCKET_PATH = "/socket/link"


@method("apps.connections.open")
def apps_connections_open(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Issue a one-use ticket and the WebSocket URL carrying it, as Slack does."""
    ticket = uuid.uuid4().hex
    ctx.tickets.add(ticket)
    ws_root = "ws" + ctx.root_url.removeprefix("http")
    return {"url": f"{ws_root.rstrip('/')}{SOCKET_PATH}?ticket={ticket}&app_id={APP_ID}"}
