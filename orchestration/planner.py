"""The Planner: turns incident text into a deterministic plan from runbooks.

The Planner reads durable knowledge only. It holds no credentials and cannot reach tools or
grants (an import-linter contract and an architecture test enforce that). The same text and
the same knowledge versions always give the same plan and the same plan hash.

Matching rule (stable): a runbook is a candidate when one of its patterns matches (its named
groups become parameters) or, if it needs no parameters, when one of its keywords appears.
Score = 10 per matching pattern + 1 per keyword present. The highest score wins; ties go to
more keywords, then to the runbook id in alphabetical order.
"""

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from common import Risk, canonical_json
from common.hashing import args_hash
from orchestration.errors import NoMatch, OrchestrationError
from orchestration.knowledge import KnowledgeSnapshot
from orchestration.runbooks import Runbook, StepSpec, fill, placeholders

PLANNER_VERSION = 1


class StepDraft(BaseModel):
    """One step of a proposed plan, placeholders filled."""

    model_config = ConfigDict(frozen=True)
    key: str
    title: str
    tool_action: str
    args: dict[str, Any]
    args_hash: str
    risk: Risk
    expect: dict[str, Any] | None = None
    compensate: dict[str, Any] | None = None
    check: dict[str, Any] | None = None
    observe: dict[str, Any] | None = None
    cost_usd: float | None = None
    canary_of: str | None = None  # this step is the canary of the step with this key


class PlanDraft(BaseModel):
    """A proposed plan: deterministic content plus the hash that names it."""

    model_config = ConfigDict(frozen=True)
    runbook_id: str
    runbook_version: int
    title: str
    params: dict[str, str]
    knowledge_pins: dict[str, int]
    steps: tuple[StepDraft, ...]
    plan_hash: str
    score: int
    budget_usd: float | None = None
    budget_tokens: int | None = None


class Candidate(BaseModel):
    """A runbook that matched, with its score and parameters."""

    model_config = ConfigDict(frozen=True)
    runbook_id: str
    score: int
    keywords: int
    params: dict[str, str]


def _matchers(runbook: Runbook) -> tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
    """The runbook's patterns and keywords compiled (once per runbook object: the ack of every
    ``/incident`` ranks every runbook)."""
    cached = _COMPILED.get(id(runbook))
    if cached is not None and cached[0] is runbook:  # the same object, not a reused id
        return cached[1]
    compiled = (
        tuple(re.compile(pattern, re.IGNORECASE) for pattern in runbook.match.patterns),
        tuple(
            re.compile(rf"(?<!\w){re.escape(keyword.lower())}(?!\w)")
            for keyword in runbook.match.keywords
        ),
    )
    _COMPILED[id(runbook)] = (runbook, compiled)
    while len(_COMPILED) > _NEEDED_MAX:  # old knowledge snapshots' runbooks go first
        _COMPILED.pop(next(iter(_COMPILED)))
    return compiled


def _keyword_hits(runbook: Runbook, text: str) -> int:
    lowered = text.lower()
    return sum(1 for keyword in _matchers(runbook)[1] if keyword.search(lowered))


def _candidate(runbook: Runbook, text: str) -> Candidate | None:
    params: dict[str, str] = {}
    pattern_hits = 0
    for pattern in _matchers(runbook)[0]:
        found = pattern.search(text)
        if found is None:
            continue
        pattern_hits += 1
        for name, value in found.groupdict().items():
            if value is not None:
                params.setdefault(name, value)
    keywords = _keyword_hits(runbook, text)
    needed = _needed_params(runbook)
    if not needed <= set(params):
        return None
    if pattern_hits == 0 and keywords == 0:
        return None
    # Built from values of the right types: no validation needed (ranked on every ack).
    return Candidate.model_construct(
        runbook_id=runbook.id, score=10 * pattern_hits + keywords, keywords=keywords, params=params
    )


def _needed_params(runbook: Runbook) -> frozenset[str]:
    """The ``{name}`` placeholders the runbook's steps use (computed once per runbook object:
    the ack of every ``/incident`` ranks every runbook)."""
    cached = _NEEDED.get(id(runbook))
    if cached is not None and cached[0] is runbook:  # the same object, not a reused id
        return cached[1]
    needed: set[str] = set()
    for step in runbook.steps:
        needed |= placeholders(step.title) | placeholders(step.args)
        if step.canary is not None:
            needed |= placeholders(step.canary.title) | placeholders(step.canary.args)
    frozen = frozenset(needed)
    _NEEDED[id(runbook)] = (runbook, frozen)
    while len(_NEEDED) > _NEEDED_MAX:  # old knowledge snapshots' runbooks go first
        _NEEDED.pop(next(iter(_NEEDED)))
    return frozen


# Runbooks are frozen models, replaced (never changed) when knowledge changes.
_NEEDED: dict[int, tuple[Runbook, frozenset[str]]] = {}
_NEEDED_MAX = 1024
_COMPILED: dict[
    int, tuple[Runbook, tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]]
] = {}


def rank(snapshot: KnowledgeSnapshot, text: str) -> list[Candidate]:
    """All matching runbooks, best first, by the stable rule in the module docstring."""
    found = [c for rb in snapshot.runbooks.values() if (c := _candidate(rb, text)) is not None]
    return sorted(found, key=lambda c: (-c.score, -c.keywords, c.runbook_id))


def closest(snapshot: KnowledgeSnapshot, text: str, limit: int = 3) -> list[str]:
    """Runbook ids closest to ``text`` by word similarity, for a helpful no-match answer."""
    words = set(re.findall(r"[a-z0-9-]+", text.lower()))

    def similarity(runbook: Runbook) -> float:
        vocab = " ".join((runbook.title, runbook.id, *runbook.match.keywords)).lower()
        overlap = len(words & set(re.findall(r"[a-z0-9-]+", vocab)))
        ratio = difflib.SequenceMatcher(None, text.lower(), vocab).ratio()
        return overlap + ratio

    ordered = sorted(snapshot.runbooks.values(), key=lambda rb: (-similarity(rb), rb.id))
    return [rb.id for rb in ordered[:limit]]


def _validate_params(runbook: Runbook, params: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for name, value in sorted(params.items()):
        pattern = runbook.param_pattern(name)
        if not re.fullmatch(pattern, value):
            raise OrchestrationError(
                f"parameter {name}={value!r} does not match {pattern} required by runbook "
                f"{runbook.id}",
                code="param_invalid",
            )
        clean[name] = value
    return clean


def hash_plan(body: Mapping[str, Any]) -> str:
    """The short hash that names a plan: SHA-256 of its canonical content."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def canary_key(key: str) -> str:
    """The key of the canary step of the step ``key``."""
    return f"canary-{key}"


def _canary_draft(spec: StepSpec, params: Mapping[str, str]) -> StepDraft:
    """The canary of ``spec``: the same action with its canary args, judged by its expect."""
    assert spec.canary is not None
    args = fill({**spec.args, **spec.canary.args}, params)
    return StepDraft(
        key=canary_key(spec.id),
        title=fill(spec.canary.title or f"Canary: {spec.title}", params),
        tool_action=spec.tool,
        args=args,
        args_hash=args_hash(spec.tool, args),
        risk=spec.canary.risk,
        expect=spec.expect,
        canary_of=spec.id,
    )


def draft_steps(specs: Sequence[StepSpec], params: Mapping[str, str]) -> tuple[StepDraft, ...]:
    """Drafts of ``specs`` with ``{name}`` placeholders filled from ``params``; pure.

    A step with a ``canary`` is preceded by its canary step.
    """
    steps = []
    for spec in specs:
        if spec.canary is not None:
            steps.append(_canary_draft(spec, params))
        args = fill(spec.args, params)
        compensate = None
        if spec.compensate is not None:
            compensate = {
                "tool": spec.compensate.tool,
                "args": fill(spec.compensate.args, params),
                "title": fill(spec.compensate.title or f"Undo {spec.title}", params),
                "risk": spec.compensate.risk.value,
            }
        check = None
        if spec.check is not None:
            check = {
                "tool": spec.check.tool,
                "args": fill(spec.check.args, params),
                "expect": spec.check.expect,
                "title": fill(spec.check.title or f"Check {spec.title}", params),
            }
        steps.append(
            StepDraft(
                key=spec.id,
                title=fill(spec.title, params),
                tool_action=spec.tool,
                args=args,
                args_hash=args_hash(spec.tool, args),
                risk=spec.risk,
                expect=spec.expect,
                compensate=compensate,
                check=check,
                # The record orchestration.observe judges the answer by.
                observe={"healthy": spec.healthy, "end_if": spec.end_if} if spec.healthy else None,
                cost_usd=spec.cost_usd,
            )
        )
    return tuple(steps)


def _checked_params(runbook: Runbook, params: Mapping[str, str]) -> dict[str, str]:
    """``params`` validated, with every placeholder the steps use given; param_invalid if not."""
    clean = _validate_params(runbook, params)
    missing = sorted(_needed_params(runbook) - set(clean))
    if missing:
        raise OrchestrationError(
            f"runbook {runbook.id} needs parameter {missing[0]!r}, which the text did not give",
            code="param_invalid",
        )
    return clean


def build(snapshot: KnowledgeSnapshot, runbook: Runbook, params: Mapping[str, str]) -> PlanDraft:
    """Build the plan of ``runbook`` with ``params``; pure and deterministic."""
    clean = _checked_params(runbook, params)
    steps = draft_steps(runbook.steps, clean)
    pins = snapshot.pins_for(runbook.id)
    body = {
        "planner": PLANNER_VERSION,
        "runbook": [runbook.id, runbook.version],
        "pins": pins,
        "params": clean,
        # A step without a check or an observation hashes as it did before they existed.
        "steps": [
            s.model_dump(
                mode="json",
                exclude={"args_hash"}
                | (set() if s.check else {"check"})
                | (set() if s.observe else {"observe"})
                | (set() if s.canary_of else {"canary_of"}),
            )
            for s in steps
        ],
    }
    plan_hash = hash_plan(body)
    budget = runbook.budget
    return PlanDraft(
        runbook_id=runbook.id,
        runbook_version=runbook.version,
        title=runbook.title,
        params=clean,
        knowledge_pins=pins,
        steps=steps,
        plan_hash=plan_hash,
        score=0,
        budget_usd=budget.usd if budget else None,
        budget_tokens=budget.tokens if budget else None,
    )


def _best(snapshot: KnowledgeSnapshot, text: str) -> Candidate:
    candidates = rank(snapshot, text)
    if not candidates:
        near = closest(snapshot, text)
        hint = f" Closest runbooks: {', '.join(near)}." if near else " No runbooks are loaded."
        raise NoMatch(f"No runbook matches {text!r}.{hint}")
    return candidates[0]


def plan(snapshot: KnowledgeSnapshot, text: str) -> PlanDraft:
    """The plan for ``text``: the best-ranked runbook, built; NoMatch names the closest ones."""
    best = _best(snapshot, text)
    draft = build(snapshot, snapshot.runbooks[best.runbook_id], best.params)
    return draft.model_copy(update={"score": best.score})


def chosen_runbook(snapshot: KnowledgeSnapshot, text: str) -> Runbook:
    """The runbook :func:`plan` would build for ``text``, with the same refusals (NoMatch,
    param_invalid), without drafting its steps: what an acknowledgement can say at once."""
    best = _best(snapshot, text)
    runbook = snapshot.runbooks[best.runbook_id]
    _checked_params(runbook, best.params)
    return runbook
