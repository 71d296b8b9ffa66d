"""Signed, expiring links to a trace page: ``{public_url}/traces/{id}?exp=EPOCH&sig=HEX``.

The signature is HMAC-SHA256 over a purpose prefix, the trace id and the expiry, under
``OPSGATE_TRACE_KEY`` (else ``OPSGATE_GRANT_KEY``, the key grants are signed with; the prefix keeps
a trace signature from ever being a grant's). Without either the key is made per process, and
links stop opening when the process restarts (logged once at start). Checked in constant time.
"""

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlencode, urlsplit

from orchestration.config import SlackConfig
from orchestration.telemetry import get_logger

log = get_logger("opsgate.traces")

TRACE_KEY_VAR = "OPSGATE_TRACE_KEY"
GRANT_KEY_VAR = "OPSGATE_GRANT_KEY"
_PURPOSE = b"opsgate-trace-link:v1:"
# Correlation ids are 32 hex digits; ids from other intakes stay within this alphabet.
TRACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SIG = re.compile(r"[0-9a-f]{64}")
_EXP = re.compile(r"[0-9]{1,12}")


class LinkCheck(StrEnum):
    """What a link's check found."""

    OK = "ok"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    FORGED = "forged"


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class TraceLinks:
    """Makes and checks trace links; ``base_url`` None makes none (no public URL configured)."""

    key: bytes
    base_url: str | None
    ttl: timedelta

    @classmethod
    def from_env(cls, base_url: str | None, *, ttl_hours: int) -> "TraceLinks":
        """The key from ``OPSGATE_TRACE_KEY`` (or the grant key), else a per-process one."""
        raw = os.environ.get(TRACE_KEY_VAR) or os.environ.get(GRANT_KEY_VAR)
        if raw:
            key = raw.encode()
        else:
            key = secrets.token_bytes(32)
            # Links to this machine (the demo, a laptop) live as long as the process anyway.
            if base_url and urlsplit(base_url).hostname not in _LOOPBACK:
                log.warning(
                    "trace_links_key_ephemeral",
                    reason=f"{TRACE_KEY_VAR} is not set: trace links stop opening at restart",
                )
        return cls(key=key, base_url=base_url, ttl=timedelta(hours=ttl_hours))

    @classmethod
    def from_config(cls, config: SlackConfig) -> "TraceLinks":
        """Links to ``slack.public_url``, valid ``slack.trace_link_ttl_hours``."""
        return cls.from_env(config.public_url, ttl_hours=config.trace_link_ttl_hours)

    def signature(self, trace_id: str, expires: int) -> str:
        """The hex HMAC of ``trace_id`` valid until ``expires`` (epoch seconds)."""
        message = _PURPOSE + f"{trace_id}:{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def query(self, trace_id: str, now: datetime) -> str:
        """``exp=...&sig=...`` for a link made at ``now``."""
        expires = int((now + self.ttl).timestamp())
        return urlencode({"exp": expires, "sig": self.signature(trace_id, expires)})

    def url(self, trace_id: object, now: datetime) -> str | None:
        """The signed link to ``trace_id``'s page, or None (no public URL, or an odd id)."""
        if self.base_url is None or not isinstance(trace_id, str):
            return None
        if not TRACE_ID.fullmatch(trace_id):
            return None
        return f"{self.base_url}/traces/{quote(trace_id, safe='')}?{self.query(trace_id, now)}"

    def check(self, trace_id: str, exp: str, sig: str, now: datetime) -> LinkCheck:
        """Whether a request for ``trace_id`` with ``exp`` and ``sig`` may see the page."""
        if not (TRACE_ID.fullmatch(trace_id) and _EXP.fullmatch(exp) and _SIG.fullmatch(sig)):
            return LinkCheck.MALFORMED
        # The signature first, in constant time: an expired forgery is a forgery.
        if not hmac.compare_digest(self.signature(trace_id, int(exp)).encode(), sig.encode()):
            return LinkCheck.FORGED
        if int(exp) <= now.timestamp():
            return LinkCheck.EXPIRED
        return LinkCheck.OK
