"""Block builders that keep within Slack's limits, and :func:`finish`, which validates a message."""

from collections.abc import Callable, Iterable, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot import strings as s
from bot.blocks.model import Rendered
from bot.blocks.text import (
    MAX_BLOCKS,
    MAX_CONTEXT_ELEMENTS,
    MAX_CONTEXT_TEXT,
    MAX_FALLBACK_TEXT,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    MAX_HEADER_TEXT,
    MAX_LINE,
    MAX_SECTION_TEXT,
    MAX_STEP_SECTIONS,
    fit,
    one_line,
)


def section(text: str | None, *, fields: Iterable[str] = ()) -> SectionBlock:
    """A mrkdwn section of ``text`` and/or ``fields``, each clipped to Slack's limits."""
    objects = [MarkdownTextObject(text=fit(f, MAX_FIELD_TEXT) or s.NONE) for f in fields]
    body = None if text is None and objects else fit(text or "", MAX_SECTION_TEXT) or s.NONE
    return SectionBlock(
        text=MarkdownTextObject(text=body) if body is not None else None,
        fields=objects[:MAX_FIELDS] or None,
    )


def context(*parts: str) -> ContextBlock:
    """A context block of the non-empty ``parts``, clipped to Slack's limits."""
    texts = [p for p in parts if p] or [s.NONE]
    return ContextBlock(
        elements=[MarkdownTextObject(text=fit(p, MAX_CONTEXT_TEXT)) for p in texts][
            :MAX_CONTEXT_ELEMENTS
        ]
    )


def header(text: str) -> HeaderBlock:
    """A plain-text header on one line, clipped to Slack's limit."""
    return HeaderBlock(text=PlainTextObject(text=one_line(text, MAX_HEADER_TEXT), emoji=True))


def packed(lines: Sequence[str], *, heading: str, more: Callable[[int], str]) -> list[Block]:
    """``lines`` packed into as few sections as fit; past ``MAX_STEP_SECTIONS``, a count."""
    chunks: list[list[str]] = [[heading]]
    size = len(heading)
    for index, raw in enumerate(lines):
        line = fit(raw, MAX_LINE)
        if size + 1 + len(line) > MAX_SECTION_TEXT:
            if len(chunks) == MAX_STEP_SECTIONS:
                return [
                    *(section("\n".join(c)) for c in chunks),
                    context(more(len(lines) - index)),
                ]
            chunks.append([])
            size = -1
        chunks[-1].append(line)
        size += 1 + len(line)
    return [section("\n".join(c)) for c in chunks]


def finish(text: str, blocks: list[Block]) -> Rendered:
    """Cap the block count (keeping a trailing actions block) and validate via ``to_dict``."""
    if len(blocks) > MAX_BLOCKS:
        tail = blocks[-1:] if isinstance(blocks[-1], ActionsBlock) else []
        keep = MAX_BLOCKS - 1 - len(tail)
        notice = context(s.MORE_BLOCKS.format(count=len(blocks) - keep - len(tail)))
        blocks = [*blocks[:keep], notice, *tail]
    return Rendered(
        text=fit(text, MAX_FALLBACK_TEXT) or s.NONE, blocks=[b.to_dict() for b in blocks]
    )
