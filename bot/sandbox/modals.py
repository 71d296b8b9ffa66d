"""Modals in the sandbox: whose each open view is, and what a submission's ack does to it.

Slack opens a modal for the user whose action produced the `trigger_id` the app passed to
`views.open`; a pushed or updated view stays that user's. `Modals` tracks that, and applies a
`view_submission` ack as Slack does: `errors` keeps the modal open with the messages, `update`
replaces it, `push` stacks a new one, `clear` closes all of the user's, anything else closes it.
"""

from __future__ import annotations

import json
from typing import Any

from bot.sandbox import signing
from bot.sandbox.courier import Delivery
from bot.sandbox.page import SandboxError
from bot.sandbox.webapi import FakeSlack
from bot.sandbox.workspace import APP_ID, TEAM_ID


class Modals:
    """The open views of one sandbox and who each is open for."""

    def __init__(self, fake: FakeSlack) -> None:
        """Track the views of `fake` (feed it `on_view_opened` for each `view_opened` event)."""
        self.fake = fake
        self._triggers: dict[str, str] = {}  # trigger_id -> the user whose action made it
        self._owner: dict[str, str] = {}  # view id -> user it is open for

    def trigger(self, user: str) -> str:
        """A fresh trigger id for an action of `user`: a view it opens is theirs."""
        trigger_id = signing.new_trigger_id()
        self._triggers[trigger_id] = user
        return trigger_id

    def owner(self, view_id: str) -> str | None:
        """Who the view is open for (None: closed, or never opened by a known trigger)."""
        return self._owner.get(view_id)

    def by_owner(self) -> dict[str, list[dict[str, Any]]]:
        """Each user's open views, oldest first."""
        views: dict[str, list[dict[str, Any]]] = {}
        for view_id, owner in self._owner.items():
            if view_id in self.fake.workspace.views:
                views.setdefault(owner, []).append(self.fake.workspace.views[view_id])
        return views

    def open_view(self, user: str, view_id: str) -> dict[str, Any]:
        """The view `view_id` if it is open for `user`; raise SandboxError (404) otherwise."""
        view = self.fake.workspace.views.get(view_id)
        if view is None or self._owner.get(view_id) != user:
            raise SandboxError(f"no open view {view_id!r} for {user}", 404)
        return view

    def on_view_opened(self, event: dict[str, Any]) -> None:
        """Record the owner of a view the app opened, pushed or updated."""
        view = event["view"]
        view_id = str(view["id"])
        owner = self._triggers.pop(str(event.get("trigger_id") or ""), None)
        owner = owner or self._owner.get(view_id)
        owner = owner or self._owner.get(str(view.get("root_view_id")))
        if owner is not None:
            self._owner[view_id] = owner

    def close(self, view_id: str, user: str) -> None:
        """Close the view for `user` and tell the page."""
        self._owner.pop(view_id, None)
        self.fake.publish({"type": "view_closed", "view_id": view_id, "user": user})

    def apply_response_action(self, user: str, view: dict[str, Any], delivery: Delivery) -> None:
        """Do what the view_submission ack asks (`errors`, `update`, `push`, `clear`) or close."""
        try:
            ack = json.loads(delivery.get("body") or "{}")
        except ValueError:
            ack = {}
        action = ack.get("response_action") if isinstance(ack, dict) else None
        ws = self.fake.workspace
        if action == "errors":
            delivery["errors"] = {str(k): str(v) for k, v in (ack.get("errors") or {}).items()}
        elif action in ("update", "push") and isinstance(ack.get("view"), dict):
            view_id = view["id"] if action == "update" else ws.next_id("V")
            stored = {
                **ack["view"],
                "id": view_id,
                "team_id": TEAM_ID,
                "app_id": APP_ID,
                "hash": ws.next_ts(),
                "root_view_id": view.get("root_view_id") or view["id"],
                "state": {"values": {}},
                "blocks": ws.with_block_ids(ack["view"].get("blocks")),
            }
            ws.views[view_id] = stored
            self._owner[view_id] = user
            self.fake.publish({"type": "view_opened", "view": stored})
        elif action == "clear":
            for view_id, owner in list(self._owner.items()):
                if owner == user:
                    self.close(view_id, user)
        else:
            self.close(view["id"], user)
