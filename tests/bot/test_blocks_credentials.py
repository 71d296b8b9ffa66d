"""Cards and status for credentials: the scope card names the credential, a running step's
status line shows the scope it holds."""

from bot import blocks
from bot.blocks import render_approval_card
from tests.bot.test_blocks import actions_blocks, all_mrkdwn, assert_accepted, card, plan_view


def test_a_scope_card_names_the_credential_and_keeps_its_buttons() -> None:
    rendered = render_approval_card(
        card(
            purpose="scope",
            quorum=1,
            authority="http:billing-write",
            authority_read_only=False,
            reason="Step 'Refund' needs the credential; approve to add it for this plan only.",
        ),
        None,
    )
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "Extend the Executor's scope for this plan:* credential `http:billing-write`" in text
    assert "(can change state)" in text
    assert (
        rendered.text
        == "Approval needed: add credential http:billing-write for Restart checkout-api"
    )
    assert actions_blocks(rendered)


def test_status_shows_the_scope_a_running_step_holds() -> None:
    view = plan_view()
    view["steps"][1] |= {
        "status": "running",
        "scope": {
            "grant_id": "g1",
            "tool_action": "http.post",
            "credentials": ["http:billing-write"],
            "expires_at": "2026-01-01T12:02:00+00:00",
        },
    }
    rendered = blocks.status_blocks(view)
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "holds `http.post` with credential `http:billing-write` until <!date^" in text
    assert "|2026-01-01 12:02 UTC>" in text
    assert "holds `" not in all_mrkdwn(blocks.status_blocks(plan_view()))  # none while idle


def test_status_names_the_service_account_and_expiry_of_a_minted_token() -> None:
    """A kubernetes step in flight: the token minted for it, by service account and expiry."""
    view = plan_view()
    view["steps"][1] |= {
        "status": "running",
        "scope": {
            "grant_id": "g1",
            "tool_action": "kubernetes.scale",
            "credentials": [],
            "expires_at": "2026-01-01T12:02:00+00:00",
            "tokens": [
                {"service_account": "opsgate/scaler", "expires_at": "2026-01-01T12:10:00+00:00"}
            ],
        },
    }
    rendered = blocks.status_blocks(view)
    assert_accepted(rendered)
    text = all_mrkdwn(rendered)
    assert "holds `kubernetes.scale` until <!date^" in text
    assert "token of service account `opsgate/scaler` minted for it, until <!date^" in text
    assert "|2026-01-01 12:10 UTC>" in text
