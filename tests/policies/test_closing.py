"""Who may resolve or cancel an incident, by the pack's ``incidents`` rules."""

import pytest

from policies import (
    CloseAction,
    CloseContext,
    Code,
    PackError,
    default_pack,
    load_pack_text,
    may_close,
)

APPROVERS = frozenset({"UAPP1", "UAPP2"})


def ctx(action: CloseAction, actor: str, **extra: object) -> CloseContext:
    return CloseContext.model_validate(
        {"action": action, "actor": actor, "requester": "UREQ", "approvers": APPROVERS, **extra}
    )


@pytest.mark.parametrize("actor", ["UREQ", "UAPP1"])
def test_the_requester_and_approvers_may_resolve(actor: str) -> None:
    assert may_close(ctx(CloseAction.RESOLVE, actor), default_pack()).counts


def test_a_channel_member_may_neither_resolve_nor_cancel_and_is_told_who_can() -> None:
    pack = default_pack()
    refused = may_close(ctx(CloseAction.RESOLVE, "USTRANGER"), pack)
    assert not refused.counts
    assert refused.code == Code.CLOSE_FORBIDDEN
    assert refused.reason == (
        "Only the person who opened it, a configured approver or a configured responder can "
        "resolve this incident."
    )
    assert not may_close(ctx(CloseAction.CANCEL, "USTRANGER"), pack).counts


def test_a_participant_may_cancel_but_not_resolve() -> None:
    pack = default_pack()
    voter = ctx(CloseAction.CANCEL, "UVOTER", participants=frozenset({"UVOTER"}))
    assert may_close(voter, pack).counts
    assert not may_close(voter.model_copy(update={"action": CloseAction.RESOLVE}), pack).counts


def test_a_configured_responder_may_resolve_an_alert_opened_incident() -> None:
    pack = load_pack_text("version: 1\nincidents: {responders: [UONCALL]}\n")
    alert = ctx(CloseAction.RESOLVE, "UONCALL", requester="alertmanager")
    assert may_close(alert, pack).counts
    assert not may_close(alert, default_pack()).counts


def test_a_pack_may_narrow_resolve_to_responders() -> None:
    pack = load_pack_text("version: 1\nincidents: {resolve: [responder], responders: [UONCALL]}\n")
    assert not may_close(ctx(CloseAction.RESOLVE, "UREQ"), pack).counts
    assert may_close(ctx(CloseAction.RESOLVE, "UONCALL"), pack).counts


def test_bad_incident_rules_are_pack_errors_with_a_line() -> None:
    with pytest.raises(PackError, match=r":3: incidents\.resolve"):
        load_pack_text("version: 1\nincidents:\n  resolve: [everyone]\n")
    with pytest.raises(PackError, match="not a Slack user id"):
        load_pack_text("version: 1\nincidents: {responders: [alice]}\n")
