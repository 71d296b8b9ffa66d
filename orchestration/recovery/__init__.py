"""Recovery: what opsgate does when the happy path breaks off.

A running step is held under a lease its process renews (``renew_held``). When a lease lapses
(the process died, the machine is gone), any replica's reconciler takes the step over
(``claim_lapsed``): read-only or idempotent steps run again under the same idempotency key;
any other step becomes **in doubt**, and humans are asked what happened on a card
(``post_in_doubt_card``, after an optional read-only check: ``record_check``). Closing an
incident stops its running steps (``stop_running``).
"""

from orchestration.recovery.leases import renew_held, stop_running
from orchestration.recovery.reconcile import (
    CheckJob,
    Reconciled,
    claim_lapsed,
    post_in_doubt_card,
    record_check,
)

__all__ = [
    "CheckJob",
    "Reconciled",
    "claim_lapsed",
    "post_in_doubt_card",
    "record_check",
    "renew_held",
    "stop_running",
]
