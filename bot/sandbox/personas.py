"""Who the browser sandbox can act as: `Persona`, and the demo's four people."""

from __future__ import annotations

import re
from dataclasses import dataclass

PALETTE = ("#e8912d", "#2eb67d", "#1d9bd1", "#e01e5a", "#8f5bd6", "#d4a017", "#00a3a3")
_HANDLE = re.compile(r"[^a-z0-9._-]")


@dataclass(frozen=True)
class Persona:
    """Someone the page can act as: a Slack user id, a display name and what they are for."""

    user_id: str
    name: str
    role_label: str
    color: str | None = None

    @property
    def handle(self) -> str:
        """The Slack username: the name's first word, lowercased (`riley`)."""
        first = (self.name.split() or [self.user_id])[0].lower()
        return _HANDLE.sub("", first) or self.user_id.lower()


# The labels say what each person may do; who is an incident's requester depends on who
# (or what: `alertmanager`) opened it, so no label claims it.
DEFAULT_PERSONAS: tuple[Persona, ...] = (
    Persona("U0RILEY01", "Riley", "on-call · approver"),
    Persona("U0SAM0002", "Sam", "approver"),
    Persona("U0ALEX003", "Alex", "approver"),
    Persona("U0JORDAN4", "Jordan", "not an approver"),
)
