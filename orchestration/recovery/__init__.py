"""Recovery: what opsgate does when the happy path breaks off.

A running step is held under a lease its process renews (``renew_held``). When a lease lapses
(the process died, the machine is gone), any replica's reconciler takes the step over
(``claim_lapsed``): read-only or idempotent steps run again under the same idempotency key;
any other step becomes **in doubt**, and humans are asked what happened on a card
(``post_in_doubt_card``, after an optional read-only check: ``record_check``). Closing an
incident stops its running steps (``stop_running``).

Recovery playbooks (YAML keyed by :class:`FailureMode`, loaded with ``load_playbooks`` and
stored as knowledge by ``store_playbooks``) say what to do when a plan fails in a known way:
``apply_playbook`` runs inside the unit of work that decides the failure (hooks:
``after_step_failed``, ``after_stale``, ``after_in_doubt``), posts the playbook's manual steps
and proposes a recovery plan of its automated steps, which the caller advances after the
commit (``proposed_plans``).
"""

from orchestration.recovery.leases import renew_held, stop_running
from orchestration.recovery.playbooks import (
    FailureMode,
    Playbook,
    PlaybookSet,
    load_playbooks,
    select_playbook,
    store_playbooks,
)
from orchestration.recovery.reconcile import (
    CheckJob,
    Reconciled,
    claim_lapsed,
    post_in_doubt_card,
    record_check,
)
from orchestration.recovery.respond import (
    Facts,
    after_in_doubt,
    after_stale,
    after_step_failed,
    apply_playbook,
    is_recovery_plan,
    proposed_plans,
)

__all__ = [
    "CheckJob",
    "Facts",
    "FailureMode",
    "Playbook",
    "PlaybookSet",
    "Reconciled",
    "after_in_doubt",
    "after_stale",
    "after_step_failed",
    "apply_playbook",
    "claim_lapsed",
    "is_recovery_plan",
    "load_playbooks",
    "post_in_doubt_card",
    "proposed_plans",
    "record_check",
    "renew_held",
    "select_playbook",
    "stop_running",
    "store_playbooks",
]
