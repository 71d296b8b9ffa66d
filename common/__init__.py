"""Shared vocabulary of every opsgate layer: risk levels, modes, roles and canonical hashing.

It imports nothing of opsgate and does no I/O, so policies, adapters and the control plane can
all speak the same words without importing each other.
"""

from common.clock import Clock, FakeClock, SystemClock
from common.hashing import args_hash, canonical_json
from common.vocab import Mode, Risk, Role

__all__ = [
    "Clock",
    "FakeClock",
    "Mode",
    "Risk",
    "Role",
    "SystemClock",
    "args_hash",
    "canonical_json",
]
