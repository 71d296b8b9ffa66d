"""State machines as data: the pure transition() and properties of every transitions table."""

from collections.abc import Mapping
from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.enums import ApprovalState, PlanStatus, StepStatus
from orchestration.errors import InvalidTransition, OrchestrationError
from orchestration.statemachine import (
    APPROVAL_TRANSITIONS,
    PLAN_FINAL,
    PLAN_TRANSITIONS,
    STEP_FINAL,
    STEP_TRANSITIONS,
    transition,
)

TABLES: list[tuple[str, Mapping[StrEnum, frozenset[StrEnum]], type[StrEnum], StrEnum]] = [
    ("step", STEP_TRANSITIONS, StepStatus, StepStatus.PENDING),  # type: ignore[list-item]
    ("plan", PLAN_TRANSITIONS, PlanStatus, PlanStatus.PROPOSED),  # type: ignore[list-item]
    ("approval", APPROVAL_TRANSITIONS, ApprovalState, ApprovalState.PENDING),  # type: ignore[list-item]
]
TABLE_IDS = [name for name, *_ in TABLES]


def _reachable(table: Mapping[StrEnum, frozenset[StrEnum]], start: StrEnum) -> set[StrEnum]:
    seen = {start}
    frontier = [start]
    while frontier:
        for nxt in table[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def test_allowed_transition_returns_the_target() -> None:
    assert transition(STEP_TRANSITIONS, StepStatus.PENDING, StepStatus.RUNNING) == "running"
    assert transition(PLAN_TRANSITIONS, PlanStatus.WAITING, PlanStatus.RUNNING) == "running"
    assert (
        transition(APPROVAL_TRANSITIONS, ApprovalState.PENDING, ApprovalState.EXPIRED)
        is ApprovalState.EXPIRED
    )


@pytest.mark.parametrize(
    ("table", "current", "target"),
    [
        (STEP_TRANSITIONS, StepStatus.PENDING, StepStatus.SUCCEEDED),
        (STEP_TRANSITIONS, StepStatus.SUCCEEDED, StepStatus.RUNNING),
        (STEP_TRANSITIONS, StepStatus.RUNNING, StepStatus.RUNNING),
        (PLAN_TRANSITIONS, PlanStatus.SUCCEEDED, PlanStatus.RUNNING),
        (PLAN_TRANSITIONS, PlanStatus.BLOCKED, PlanStatus.RUNNING),
        (APPROVAL_TRANSITIONS, ApprovalState.APPROVED, ApprovalState.REJECTED),
        (APPROVAL_TRANSITIONS, ApprovalState.PENDING, ApprovalState.PENDING),
    ],
)
def test_pair_not_in_the_table_raises_invalid_transition_naming_both_states(
    table: Mapping[StrEnum, frozenset[StrEnum]], current: StrEnum, target: StrEnum
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        transition(table, current, target)
    assert isinstance(caught.value, OrchestrationError)
    assert caught.value.code == "invalid_transition"
    assert caught.value.message == f"cannot go from {current.value} to {target.value}"


@pytest.mark.parametrize(("name", "table", "enum", "initial"), TABLES, ids=TABLE_IDS)
def test_every_state_has_a_row_and_every_target_is_a_known_state(
    name: str, table: Mapping[StrEnum, frozenset[StrEnum]], enum: type[StrEnum], initial: StrEnum
) -> None:
    assert set(table) == set(enum)
    for targets in table.values():
        assert targets <= set(enum)


@pytest.mark.parametrize(("name", "table", "enum", "initial"), TABLES, ids=TABLE_IDS)
def test_every_state_is_reachable_from_the_initial_state(
    name: str, table: Mapping[StrEnum, frozenset[StrEnum]], enum: type[StrEnum], initial: StrEnum
) -> None:
    assert _reachable(table, initial) == set(enum)


@pytest.mark.parametrize(("name", "table", "enum", "initial"), TABLES, ids=TABLE_IDS)
def test_no_state_leads_back_to_the_initial_state(
    name: str, table: Mapping[StrEnum, frozenset[StrEnum]], enum: type[StrEnum], initial: StrEnum
) -> None:
    assert all(initial not in targets for targets in table.values())


def test_final_state_sets_are_exactly_the_states_without_successors() -> None:
    assert {
        PlanStatus.SUCCEEDED,
        PlanStatus.FAILED,
        PlanStatus.HALTED,
        PlanStatus.STALE,
        PlanStatus.CANCELLED,
        PlanStatus.SHADOW,
    } == PLAN_FINAL
    assert {
        StepStatus.DENIED,
        StepStatus.REJECTED,
        StepStatus.SKIPPED,
        StepStatus.COMPENSATED,
        StepStatus.CANCELLED,
    } == STEP_FINAL


def _walk(
    table: Mapping[StrEnum, frozenset[StrEnum]], initial: StrEnum, targets: list[StrEnum]
) -> None:
    """Apply random targets; refused ones leave the state alone; finals never change."""
    state = initial
    reachable = _reachable(table, initial)
    for target in targets:
        was_final = not table[state]
        try:
            new = transition(table, state, target)
        except InvalidTransition:
            assert target not in table[state]
            continue
        assert not was_final, f"final state {state} changed to {target}"
        assert new is target
        state = new
        assert state in reachable


@given(st.lists(st.sampled_from(list(StepStatus)), max_size=40))
def test_random_step_walk_never_leaves_a_final_state(targets: list[StepStatus]) -> None:
    _walk(STEP_TRANSITIONS, StepStatus.PENDING, targets)  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(list(PlanStatus)), max_size=40))
def test_random_plan_walk_never_leaves_a_final_state(targets: list[PlanStatus]) -> None:
    _walk(PLAN_TRANSITIONS, PlanStatus.PROPOSED, targets)  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(list(ApprovalState)), max_size=40))
def test_random_approval_walk_never_leaves_a_final_state(targets: list[ApprovalState]) -> None:
    _walk(APPROVAL_TRANSITIONS, ApprovalState.PENDING, targets)  # type: ignore[arg-type]


@given(
    table_index=st.integers(0, len(TABLES) - 1),
    data=st.data(),
)
def test_transition_succeeds_exactly_for_pairs_in_the_table(
    table_index: int, data: st.DataObject
) -> None:
    _, table, enum, _ = TABLES[table_index]
    current = data.draw(st.sampled_from(list(enum)))
    target = data.draw(st.sampled_from(list(enum)))
    if target in table[current]:
        assert transition(table, current, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(table, current, target)
