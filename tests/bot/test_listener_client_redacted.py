"""Calls a Bolt listener makes to Slack are redacted too: Bolt hands listeners a plain client it
builds per request, so opsgate puts its redacting client back (``redacting_client``)."""

from pathlib import Path

import pytest

from bot.sandbox import signing
from orchestration.rollout.promotion import Voted
from tests.bot.scenario import APPROVER_A, CHANNEL, Stack

PLANTED = "password=hunter2-very-secret"


async def test_an_ephemeral_answer_from_a_click_listener_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Stack(db_url=f"sqlite:///{tmp_path / 'r.db'}", tmp_path=tmp_path) as stack:
        assert stack.app is not None

        async def refuse(**_kwargs: object) -> Voted:
            return Voted(False, "not_an_approver", f"refused; it said {PLANTED}")

        monkeypatch.setattr(stack.app.surface.control.rollout, "vote", refuse)
        card = {
            "ts": "1700000000.000100",
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "promotion_actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "approve_promotion",
                            "value": "nonce-1",
                            "text": {"type": "plain_text", "text": "Approve promotion"},
                        }
                    ],
                }
            ],
        }
        body = signing.button_click_body(
            message=card, channel_id=CHANNEL, action_id="approve_promotion", user_id=APPROVER_A
        )
        status, _ = await stack.post(body)
        assert status == 200
        await stack.settle()
        sent = [c for c in stack.slack.calls if c.method == "chat.postEphemeral"]
        assert sent, [c.method for c in stack.slack.calls]
        text = str(sent[-1].args)
        assert "hunter2-very-secret" not in text
        assert "refused; it said password=" in text
