"""Slack's documented Block Kit limits, checked without a server."""

from typing import Any

import pytest

from bot.blocks.rollout import baseline_modal
from bot.sandbox.limits import Surface, check_blocks, check_message, check_view, message_warnings


def section(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": "section", "text": {"type": kind, "text": text}}


def button(action_id: str, *, text: str = "Approve", value: str = "nonce") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def actions(*elements: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements)}
    if block_id:
        block["block_id"] = block_id
    return block


def test_valid_incident_message_passes() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Incident"}},
        section("*checkout-api* is down"),
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "plan v1"}]},
        actions(button("approve_step"), button("reject_step", text="Reject")),
        {"type": "markdown", "text": "**ok**"},
        {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": []}]},
    ]
    assert check_blocks(blocks) == []
    assert check_message("fallback", blocks) == []


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([{"type": "divider"}] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
        (
            [section("x" * 3001)],
            "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [actions(*[button(f"b{i}") for i in range(26)])],
            "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [actions(button("a", text="t" * 76))],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [actions(button("a", value="v" * 2001))],
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        (
            [actions(button("a" * 256))],
            "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
        ),
        (
            [actions(button("same"), button("same"))],
            "duplicate action_id: same [json-pointer:/blocks/0/elements/1/action_id]",
        ),
        (
            [actions(button("a"), block_id="b"), actions(button("c"), block_id="b")],
            "duplicate block_id: b [json-pointer:/blocks/1/block_id]",
        ),
        (
            [{"type": "divider", "block_id": "x" * 256}],
            "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
        ),
        ([{"type": "banner"}], "unsupported block type: banner [json-pointer:/blocks/0/type]"),
        (
            [
                section("hi", kind="plain_text")
                | {"text": {"type": "mrkdwn", "text": "x", "emoji": True}}
            ],
            "invalid additional property: emoji [json-pointer:/blocks/0/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            "must be one of: plain_text [json-pointer:/blocks/0/text/type]",
        ),
        ([section("")], "must be more than 0 characters [json-pointer:/blocks/0/text/text]"),
        ([{"type": "section"}], "missing required field: text [json-pointer:/blocks/0]"),
        (
            [actions({**button("a"), "disabled": True})],
            "invalid additional property: disabled [json-pointer:/blocks/0/elements/0]",
        ),
    ],
)
def test_limit_is_refused_with_slack_detail(blocks: list[dict[str, Any]], expected: str) -> None:
    assert expected in check_blocks(blocks)


def test_same_action_id_in_different_blocks_is_allowed() -> None:
    """Slack asks action_id to be unique within its containing block, not the message."""
    assert check_blocks([actions(button("approve_step")), actions(button("approve_step"))]) == []


def test_modals_allow_100_blocks() -> None:
    assert check_blocks([{"type": "divider"}] * 100, surface=Surface.MODAL) == []
    assert check_blocks([{"type": "divider"}] * 101, surface=Surface.MODAL) != []


def test_message_needs_text_or_blocks() -> None:
    assert check_message(None, None) == ["no_text"]
    assert check_message("", []) == ["no_text"]
    assert check_message("hello", None) == []


def test_long_text_is_truncated_not_refused() -> None:
    assert check_message("x" * 40_001, None) == []
    assert message_warnings("x" * 40_001) == ["message_truncated"]
    assert message_warnings("x" * 40_000) == []


def test_markdown_blocks_share_a_12000_character_budget() -> None:
    blocks = [{"type": "markdown", "text": "m" * 7000}, {"type": "markdown", "text": "m" * 7000}]
    assert check_message(None, blocks) == ["msg_blocks_too_long"]


def test_view_limits() -> None:
    title = {"type": "plain_text", "text": "Incident"}
    ok = {"type": "modal", "title": title, "blocks": []}
    assert check_view(ok) == []
    too_long = {**ok, "title": {"type": "plain_text", "text": "t" * 25}}
    assert "must be less than 25 characters [json-pointer:/view/title/text]" in check_view(too_long)
    field = {"type": "plain_text_input", "action_id": "reason"}
    needs_submit = {**ok, "blocks": [{"type": "input", "label": title, "element": field}]}
    assert "missing required field: submit [json-pointer:/view]" in check_view(needs_submit)


def test_the_baseline_modal_with_its_checkboxes_is_a_valid_view() -> None:
    proposals = [{"key": f"step-{i}", "title": f"Restart node {i}"} for i in range(12)]
    view = baseline_modal("0" * 32, proposals)
    assert check_view(view) == []
    [taken] = [b for b in view["blocks"] if b["element"]["type"] == "checkboxes"]
    assert len(taken["element"]["options"]) == 10  # the rest do not fit Slack's checkboxes


def test_checkboxes_and_radio_buttons_list_at_most_ten_options() -> None:
    options = [{"text": {"type": "plain_text", "text": str(i)}, "value": str(i)} for i in range(11)]
    label = {"type": "plain_text", "text": "Which?"}
    for kind in ("checkboxes", "radio_buttons"):
        element = {"type": kind, "action_id": "pick", "options": options}
        errors = check_blocks([{"type": "input", "label": label, "element": element}])
        assert errors == [
            "no more than 10 items allowed [json-pointer:/blocks/0/element/options]"
        ], kind
        element["options"] = options[:10]
        assert check_blocks([{"type": "input", "label": label, "element": element}]) == []
