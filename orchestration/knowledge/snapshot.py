"""What the Planner reads: runbooks and the policy pack, with the versions of those bodies."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestration.runbooks import Runbook
from policies import Pack


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """Runbooks and the policy pack a plan is built from, and the versions naming them.

    ``versions`` are the versions of exactly these bodies (so a plan's pins never claim a
    version it was not built from); ``hashes`` their content hashes, tombstones included.
    """

    runbooks: Mapping[str, Runbook]
    versions: Mapping[str, int] = field(default_factory=dict)
    pack: Pack | None = None
    hashes: Mapping[str, str] = field(default_factory=dict)

    def pins_for(self, runbook_id: str) -> dict[str, int]:
        """Versions a plan built from ``runbook_id`` depends on (the runbook, the policy pack)."""
        keys = [f"runbook:{runbook_id}"]
        keys += sorted(k for k in self.versions if k.startswith("policy:"))
        return {k: self.versions[k] for k in keys if k in self.versions}
