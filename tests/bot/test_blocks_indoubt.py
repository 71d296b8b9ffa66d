"""The in-doubt card and notices: what is known, three answers bound to one nonce."""

from bot.blocks import render, render_approval_card
from bot.ids import ActionId

CARD = {
    "approval_id": "a1",
    "nonce": "n" * 32,
    "purpose": "in_doubt",
    "quorum": 2,
    "exclude_requester": True,
    "title": "Restart checkout-api",
    "tool_action": "http.post",
    "requester": "UREQ",
    "correlation_id": "c" * 32,
    "in_doubt": {
        "owner": "host-a:4242:beef",
        "started_at": "2026-01-01T12:00:00+00:00",
        "last_span": None,
        "check": {
            "title": "Is checkout-api up?",
            "tool_action": "http.get",
            "ok": True,
            "summary": "GET /health -> 200",
        },
        "idempotency_key": "opsgate-s1",
    },
}


def buttons(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_the_pending_card_says_in_doubt_what_is_known_and_offers_three_answers() -> None:
    rendered = render("approval_requested", CARD)
    text = str(rendered.blocks)
    assert "In doubt" in text
    assert "host-a:4242:beef" in text
    assert "Is checkout-api up?" in text
    assert "looks done" in text
    assert "opsgate-s1" in text
    found = buttons(rendered.blocks)
    assert [b["action_id"] for b in found] == [
        ActionId.IN_DOUBT_RAN,
        ActionId.IN_DOUBT_RERUN,
        ActionId.IN_DOUBT_STOP,
    ]
    assert {b["value"] for b in found} == {CARD["nonce"]}
    assert "In doubt" in rendered.text


def test_a_settled_card_loses_its_buttons_and_says_who_decided_what() -> None:
    votes = [
        {"voter": "UA", "choice": "ran", "reason": ""},
        {"voter": "UB", "choice": "ran", "reason": ""},
    ]
    rendered = render_approval_card(
        CARD, {"state": "approved", "votes": votes, "choice": "ran", "quorum": 2}
    )
    assert buttons(rendered.blocks) == []
    assert "it ran" in str(rendered.blocks)
    assert "<@UA>" in str(rendered.blocks)
    assert "<@UB>" in str(rendered.blocks)
    stopped = render_approval_card(CARD, {"state": "rejected", "decided_by": "UREQ"})
    assert "Stopped" in str(stopped.blocks)
    assert "stays in doubt" in str(stopped.blocks)


def test_notices_for_an_orphaned_step_and_a_rerun() -> None:
    notice = render(
        "step_in_doubt",
        {"title": "Restart", "tool_action": "http.post", "owner": "h:1:2", "why": "gone"},
    )
    assert "In doubt" in notice.text
    assert "h:1:2" in str(notice.blocks)
    rerun = render("step_rerun", {"title": "Probe", "previous_owner": "h:1:2", "why": "read-only"})
    assert "runs again" in str(rerun.blocks)
