"""StrEnums shared by every layer."""

from enum import StrEnum


class Risk(StrEnum):
    """How much harm a step can do; ordered from ``low`` to ``critical``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order low < medium < high < critical."""
        return _RISK_ORDER.index(self)

    def at_least(self, other: "Risk") -> "Risk":
        """The higher of ``self`` and ``other``."""
        return self if self.rank >= other.rank else other


_RISK_ORDER = (Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL)


class Mode(StrEnum):
    """Staged autonomy: how much opsgate may do on its own."""

    SHADOW = "shadow"
    SUPERVISED = "supervised"
    GATED = "gated"


class Role(StrEnum):
    """Who acts: the four agent roles, a human, or the system itself."""

    PLANNER = "planner"
    RESEARCHER = "researcher"
    EXECUTOR = "executor"
    AUDITOR = "auditor"
    HUMAN = "human"
    SYSTEM = "system"
