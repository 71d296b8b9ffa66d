"""Slack's documented Block Kit and message limits, as pure checks.

Each problem is reported the way Slack's Web API reports it inside an `invalid_blocks`
refusal: a detail line ending in a JSON pointer, for example
`must be less than 3001 characters [json-pointer:/blocks/0/text/text]`.

Sources (docs.slack.dev Block Kit reference, checked 2026): 50 blocks per message and 100 per
modal or Home tab; section text 3000, fields 10 x 2000; header 150; context 10 elements;
actions 25 elements; button text 75, value 2000, url 3000; action_id and block_id 255;
action_id unique within its containing block, block_id unique within the message or view;
markdown block 12000 characters, cumulative over the payload; modal title/submit/close 24,
private_metadata 3000, callback_id 255. Message `text` past 40000 characters is truncated with a
`message_truncated` warning, never refused (changelog 2018-04 "Truncating really long messages").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TEXT_LIMIT = 40_000
TEXT_ADVISED = 4_000
MARKDOWN_TOTAL_LIMIT = 12_000


class Surface(StrEnum):
    """Where blocks are shown; the block count limit depends on it."""

    MESSAGE = "message"
    MODAL = "modal"
    HOME = "home"


MAX_BLOCKS = {Surface.MESSAGE: 50, Surface.MODAL: 100, Surface.HOME: 100}

_PLAIN = frozenset({"plain_text"})
_ANY_TEXT = frozenset({"plain_text", "mrkdwn"})
_TEXT_KEYS = {"plain_text": {"type", "text", "emoji"}, "mrkdwn": {"type", "text", "verbatim"}}

_BLOCK_KEYS: dict[str, frozenset[str]] = {
    "section": frozenset({"text", "fields", "accessory", "expand"}),
    "header": frozenset({"text"}),
    "context": frozenset({"elements"}),
    "divider": frozenset(),
    "actions": frozenset({"elements"}),
    "image": frozenset({"image_url", "slack_file", "alt_text", "title"}),
    "input": frozenset({"label", "element", "dispatch_action", "hint", "optional"}),
    "rich_text": frozenset({"elements"}),
    "markdown": frozenset({"text"}),
    "file": frozenset({"external_id", "source"}),
    "video": frozenset(
        {
            "alt_text",
            "author_name",
            "description",
            "provider_icon_url",
            "provider_name",
            "title",
            "title_url",
            "thumbnail_url",
            "video_url",
        }
    ),
    "table": frozenset({"rows", "column_settings"}),
}
KNOWN_BLOCK_TYPES = frozenset(_BLOCK_KEYS)

_SELECTS = frozenset(
    {
        f"{prefix}{kind}_select"
        for prefix in ("", "multi_")
        for kind in ("static", "external", "users", "conversations", "channels")
    }
)
_ACTION_ELEMENTS = _SELECTS | {
    "button",
    "checkboxes",
    "datepicker",
    "datetimepicker",
    "overflow",
    "radio_buttons",
    "timepicker",
    "workflow_button",
}
_ACCESSORY_ELEMENTS = _ACTION_ELEMENTS | {"image"}
_INPUT_ELEMENTS = _SELECTS | {
    "checkboxes",
    "datepicker",
    "datetimepicker",
    "timepicker",
    "radio_buttons",
    "plain_text_input",
    "email_text_input",
    "url_text_input",
    "number_input",
    "rich_text_input",
    "file_input",
}
# Options an element may list (selects: 100).
_MAX_OPTIONS = {"overflow": 5, "checkboxes": 10, "radio_buttons": 10}
_BUTTON_KEYS = frozenset(
    {"type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"}
)
_RICH_TEXT_ELEMENTS = frozenset(
    {"rich_text_section", "rich_text_list", "rich_text_preformatted", "rich_text_quote"}
)


@dataclass(frozen=True)
class Refusal:
    """Why Slack refuses a call: its `error` code and the detail lines it returns with it."""

    error: str
    errors: list[str] = field(default_factory=list)


class _Checker:
    """Walks a block tree and collects Slack-style detail lines."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.block_ids: set[str] = set()
        self.markdown_chars = 0

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def string(self, value: object, pointer: str, *, max_len: int, min_len: int = 0) -> None:
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > max_len:
            self.fail(f"must be less than {max_len + 1} characters", pointer)
        elif len(value) < min_len:
            self.fail(f"must be more than {min_len - 1} characters", pointer)

    def items(
        self, value: object, pointer: str, *, max_items: int, min_items: int = 1
    ) -> list[Any]:
        if not isinstance(value, list):
            self.fail("must be an array", pointer)
            return []
        if len(value) > max_items:
            self.fail(f"no more than {max_items} items allowed", pointer)
        elif len(value) < min_items:
            self.fail(f"must provide at least {min_items} items", pointer)
        return value

    def keys(self, obj: dict[str, Any], allowed: frozenset[str] | set[str], pointer: str) -> None:
        for key in obj:
            if key not in allowed:
                self.fail(f"invalid additional property: {key}", pointer)

    def required(self, obj: dict[str, Any], name: str, pointer: str) -> bool:
        if obj.get(name) is None:
            self.fail(f"missing required field: {name}", pointer)
            return False
        return True

    def text_object(
        self, value: object, pointer: str, *, max_len: int, kinds: frozenset[str] = _ANY_TEXT
    ) -> None:
        if not isinstance(value, dict):
            self.fail("must be an object", pointer)
            return
        kind = value.get("type")
        if kind not in kinds:
            self.fail("failed to match all allowed schemas", pointer)
            self.fail(f"must be one of: {', '.join(sorted(kinds))}", f"{pointer}/type")
            return
        self.keys(value, _TEXT_KEYS[kind], pointer)
        if self.required(value, "text", pointer):
            self.string(value["text"], f"{pointer}/text", max_len=max_len, min_len=1)

    def block_id(self, block: dict[str, Any], pointer: str) -> None:
        block_id = block.get("block_id")
        if block_id is None:
            return
        self.string(block_id, f"{pointer}/block_id", max_len=255, min_len=1)
        if isinstance(block_id, str):
            if block_id in self.block_ids:
                self.fail(f"duplicate block_id: {block_id}", f"{pointer}/block_id")
            self.block_ids.add(block_id)

    def element(self, value: object, pointer: str, allowed: frozenset[str], seen: set[str]) -> None:
        if not isinstance(value, dict):
            self.fail("must be an object", pointer)
            return
        kind = value.get("type")
        if kind not in allowed:
            self.fail("failed to match all allowed schemas", pointer)
            self.fail(f"unsupported element type: {kind}", f"{pointer}/type")
            return
        if kind == "image":
            self.image_element(value, pointer)
            return
        action_id = value.get("action_id")
        if action_id is not None:
            self.string(action_id, f"{pointer}/action_id", max_len=255, min_len=1)
            if isinstance(action_id, str):
                if action_id in seen:
                    self.fail(f"duplicate action_id: {action_id}", f"{pointer}/action_id")
                seen.add(action_id)
        if kind == "button":
            self.button(value, pointer)
            return
        if "placeholder" in value:
            self.text_object(
                value["placeholder"], f"{pointer}/placeholder", max_len=150, kinds=_PLAIN
            )
        if "options" in value:
            most, least = _MAX_OPTIONS.get(str(kind), 100), 1
            for i, option in enumerate(
                self.items(value["options"], f"{pointer}/options", max_items=most, min_items=least)
            ):
                self.option(option, f"{pointer}/options/{i}")

    def button(self, value: dict[str, Any], pointer: str) -> None:
        self.keys(value, _BUTTON_KEYS, pointer)
        if self.required(value, "text", pointer):
            self.text_object(value["text"], f"{pointer}/text", max_len=75, kinds=_PLAIN)
        if "value" in value:
            self.string(value["value"], f"{pointer}/value", max_len=2000)
        if "url" in value:
            self.string(value["url"], f"{pointer}/url", max_len=3000, min_len=1)
        if "accessibility_label" in value:
            self.string(value["accessibility_label"], f"{pointer}/accessibility_label", max_len=75)
        if "style" in value and value["style"] not in ("primary", "danger"):
            self.fail("must be one of: danger, primary", f"{pointer}/style")

    def option(self, value: object, pointer: str) -> None:
        if not isinstance(value, dict):
            self.fail("must be an object", pointer)
            return
        if self.required(value, "text", pointer):
            self.text_object(value["text"], f"{pointer}/text", max_len=75)
        if "value" in value:
            self.string(value["value"], f"{pointer}/value", max_len=150, min_len=1)

    def image_element(self, value: dict[str, Any], pointer: str) -> None:
        if "image_url" not in value and "slack_file" not in value:
            self.fail("missing required field: image_url", pointer)
        if "image_url" in value:
            self.string(value["image_url"], f"{pointer}/image_url", max_len=3000, min_len=1)
        if self.required(value, "alt_text", pointer):
            self.string(value["alt_text"], f"{pointer}/alt_text", max_len=2000, min_len=1)

    def block(self, block: object, pointer: str) -> None:
        if not isinstance(block, dict):
            self.fail("must be an object", pointer)
            return
        kind = block.get("type")
        if kind not in KNOWN_BLOCK_TYPES:
            self.fail("failed to match all allowed schemas", pointer)
            self.fail(f"unsupported block type: {kind}", f"{pointer}/type")
            return
        self.keys(block, _BLOCK_KEYS[kind] | {"type", "block_id"}, pointer)
        self.block_id(block, pointer)
        getattr(self, f"block_{kind}", _no_check)(block, pointer)

    def block_section(self, block: dict[str, Any], pointer: str) -> None:
        if block.get("text") is None and block.get("fields") is None:
            self.fail("missing required field: text", pointer)
        if block.get("text") is not None:
            self.text_object(block["text"], f"{pointer}/text", max_len=3000)
        if block.get("fields") is not None:
            for i, item in enumerate(
                self.items(block["fields"], f"{pointer}/fields", max_items=10)
            ):
                self.text_object(item, f"{pointer}/fields/{i}", max_len=2000)
        if block.get("accessory") is not None:
            self.element(block["accessory"], f"{pointer}/accessory", _ACCESSORY_ELEMENTS, set())

    def block_header(self, block: dict[str, Any], pointer: str) -> None:
        if self.required(block, "text", pointer):
            self.text_object(block["text"], f"{pointer}/text", max_len=150, kinds=_PLAIN)

    def block_context(self, block: dict[str, Any], pointer: str) -> None:
        for i, item in enumerate(
            self.items(block.get("elements"), f"{pointer}/elements", max_items=10)
        ):
            at = f"{pointer}/elements/{i}"
            if isinstance(item, dict) and item.get("type") == "image":
                self.image_element(item, at)
            else:
                self.text_object(item, at, max_len=3000)

    def block_actions(self, block: dict[str, Any], pointer: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(
            self.items(block.get("elements"), f"{pointer}/elements", max_items=25)
        ):
            self.element(item, f"{pointer}/elements/{i}", _ACTION_ELEMENTS, seen)

    def block_image(self, block: dict[str, Any], pointer: str) -> None:
        self.image_element(block, pointer)
        if block.get("title") is not None:
            self.text_object(block["title"], f"{pointer}/title", max_len=2000, kinds=_PLAIN)

    def block_input(self, block: dict[str, Any], pointer: str) -> None:
        if self.required(block, "label", pointer):
            self.text_object(block["label"], f"{pointer}/label", max_len=2000, kinds=_PLAIN)
        if block.get("hint") is not None:
            self.text_object(block["hint"], f"{pointer}/hint", max_len=2000, kinds=_PLAIN)
        if self.required(block, "element", pointer):
            self.element(block["element"], f"{pointer}/element", frozenset(_INPUT_ELEMENTS), set())

    def block_rich_text(self, block: dict[str, Any], pointer: str) -> None:
        for i, item in enumerate(
            self.items(block.get("elements"), f"{pointer}/elements", max_items=100)
        ):
            if not isinstance(item, dict) or item.get("type") not in _RICH_TEXT_ELEMENTS:
                self.fail("failed to match all allowed schemas", f"{pointer}/elements/{i}")

    def block_markdown(self, block: dict[str, Any], pointer: str) -> None:
        if self.required(block, "text", pointer):
            self.string(block["text"], f"{pointer}/text", max_len=MARKDOWN_TOTAL_LIMIT, min_len=1)
            if isinstance(block["text"], str):
                self.markdown_chars += len(block["text"])

    def blocks(self, blocks: object, pointer: str, surface: Surface) -> None:
        items = self.items(blocks, pointer, max_items=MAX_BLOCKS[surface], min_items=0)
        for i, block in enumerate(items):
            self.block(block, f"{pointer}/{i}")


def _no_check(block: dict[str, Any], pointer: str) -> None:
    """Blocks with nothing to check beyond their keys (divider, file, video, table)."""


def check_blocks(blocks: list[dict[str, Any]], *, surface: Surface = Surface.MESSAGE) -> list[str]:
    """Return Slack's `invalid_blocks` detail lines for `blocks` (empty when Slack accepts them)."""
    checker = _Checker()
    checker.blocks(blocks, "/blocks", surface)
    return checker.errors


def message_refusal(text: object, blocks: object) -> Refusal | None:
    """Return how Slack refuses a message with this `text` and `blocks`, or None if it posts."""
    if blocks is not None and not (
        isinstance(blocks, list) and all(isinstance(block, dict) for block in blocks)
    ):
        return Refusal("invalid_blocks_format")
    if text is not None and not isinstance(text, str):
        return Refusal("invalid_arguments", ["must be a string [json-pointer:/text]"])
    if not text and not blocks:
        return Refusal("no_text")
    if blocks:
        checker = _Checker()
        checker.blocks(blocks, "/blocks", Surface.MESSAGE)
        if checker.errors:
            return Refusal("invalid_blocks", checker.errors)
        if checker.markdown_chars > MARKDOWN_TOTAL_LIMIT:
            return Refusal("msg_blocks_too_long")
    return None


def check_message(text: str | None, blocks: list[dict[str, Any]] | None) -> list[str]:
    """Return why Slack refuses this message: detail lines, or a bare error code (empty = posts)."""
    refusal = message_refusal(text, blocks)
    if refusal is None:
        return []
    return refusal.errors or [refusal.error]


def message_warnings(text: str | None) -> list[str]:
    """Return Slack's warnings for a message that still posts (`message_truncated`)."""
    return ["message_truncated"] if text is not None and len(text) > TEXT_LIMIT else []


def check_view(view: object) -> list[str]:
    """Return detail lines for a modal or Home tab view object (empty when Slack accepts it)."""
    checker = _Checker()
    if not isinstance(view, dict):
        checker.fail("must be an object", "/view")
        return checker.errors
    kind = view.get("type")
    if kind not in (Surface.MODAL, Surface.HOME):
        checker.fail("must be one of: home, modal", "/view/type")
        return checker.errors
    if kind == Surface.MODAL:
        if checker.required(view, "title", "/view"):
            checker.text_object(view["title"], "/view/title", max_len=24, kinds=_PLAIN)
        for name in ("submit", "close"):
            if view.get(name) is not None:
                checker.text_object(view[name], f"/view/{name}", max_len=24, kinds=_PLAIN)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            checker.fail("missing required field: submit", "/view")
    if view.get("private_metadata") is not None:
        checker.string(view["private_metadata"], "/view/private_metadata", max_len=3000)
    if view.get("callback_id") is not None:
        checker.string(view["callback_id"], "/view/callback_id", max_len=255)
    if checker.required(view, "blocks", "/view"):
        checker.blocks(view["blocks"], "/view/blocks", Surface(kind))
    return checker.errors
