"""Exit criteria against evidence: each criterion, what was seen, its bound, met or not."""

from dataclasses import dataclass

from common import Risk
from orchestration.rollout.evidence import Evidence, Rate
from orchestration.rollout.settings import ExitCriteria


@dataclass(frozen=True)
class Criterion:
    """One exit criterion: ``name``, what the evidence shows, the bound, and whether it holds."""

    name: str
    seen: str
    bound: str
    met: bool

    def words(self) -> str:
        """``✓ days in stage: 31.0 (at least 30)``."""
        return f"{'✓' if self.met else '✗'} {self.name}: {self.seen} ({self.bound})"


def _rate_criterion(name: str, rate: Rate, bound: float) -> Criterion:
    value = rate.value
    met = value is None or value <= bound + 1e-12
    return Criterion(name, rate.words(), f"at most {bound:.1%}", met)


def evaluate(criteria: ExitCriteria, seen: Evidence) -> list[Criterion]:
    """Every criterion of ``criteria`` against ``seen``, in a fixed order."""
    out = [
        Criterion(
            "days in stage",
            f"{seen.days:.1f}",
            f"at least {criteria.min_days}",
            seen.days >= criteria.min_days,
        ),
        Criterion(
            "judged incidents",
            str(seen.incidents),
            f"at least {criteria.min_incidents}",
            seen.incidents >= criteria.min_incidents,
        ),
    ]
    for risk in (Risk.LOW, Risk.MEDIUM, Risk.HIGH):
        if risk in criteria.max_fp_rate:
            out.append(
                _rate_criterion(f"FP rate {risk}", seen.fp[risk], criteria.max_fp_rate[risk])
            )
    for risk in (Risk.LOW, Risk.MEDIUM, Risk.HIGH):
        if risk in criteria.max_fn_rate:
            out.append(
                _rate_criterion(f"FN rate {risk}", seen.fn[risk], criteria.max_fn_rate[risk])
            )
    cpa = "-" if seen.cost_per_action is None else f"${seen.cost_per_action:.4f}"
    out.append(
        Criterion(
            "cost per action drift",
            f"{seen.cost_drift:.1%} ({cpa} per action)",
            f"at most {criteria.max_cost_drift:.0%}",
            seen.cost_drift <= criteria.max_cost_drift + 1e-12,
        )
    )
    out.append(
        Criterion(
            "failed, compensated or in-doubt actions",
            str(seen.failures),
            f"at most {criteria.max_compensated}",
            seen.failures <= criteria.max_compensated,
        )
    )
    return out


def unmet(results: list[Criterion]) -> list[str]:
    """The words of each criterion that does not hold."""
    return [c.words() for c in results if not c.met]
