"""Canonical JSON and the hashes that bind approvals and grants to exact arguments."""

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialise ``value`` so equal data always gives equal text (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def args_hash(tool_action: str, args: Any) -> str:
    """SHA-256 over the tool action and its canonical arguments (hex)."""
    digest = hashlib.sha256()
    digest.update(tool_action.encode())
    digest.update(b"\0")
    digest.update(canonical_json(args).encode())
    return digest.hexdigest()
