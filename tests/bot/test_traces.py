"""Trace pages: signed, expiring links; the waterfall's rendering; the route behind them."""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs

from bot.blocks.text import trace_text
from bot.traces import LinkCheck, TraceLinks, render_forbidden, render_missing, render_trace
from orchestration.models import Span
from tests.bot.scenario import APPROVER_A, APPROVER_B, Stack

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TRACE = "0123456789abcdef0123456789abcdef"
KEY = "trace-key-for-tests-0123456789"


def links(key: bytes = b"k" * 32, *, hours: int = 24) -> TraceLinks:
    return TraceLinks(key=key, base_url="https://opsgate.example.com", ttl=timedelta(hours=hours))


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], query["exp"][0], query["sig"][0]


# --- signing -------------------------------------------------------------------------------


def test_a_link_opens_until_it_expires() -> None:
    signed = links(hours=24)
    url = signed.url(TRACE, NOW)
    assert url is not None
    assert url.startswith(f"https://opsgate.example.com/traces/{TRACE}?exp=")
    trace, exp, sig = parts(url)
    assert int(exp) == int((NOW + timedelta(hours=24)).timestamp())
    assert signed.check(trace, exp, sig, NOW) is LinkCheck.OK
    assert signed.check(trace, exp, sig, NOW + timedelta(hours=23, minutes=59)) is LinkCheck.OK
    assert signed.check(trace, exp, sig, NOW + timedelta(hours=24)) is LinkCheck.EXPIRED
    assert signed.check(trace, exp, sig, NOW + timedelta(days=30)) is LinkCheck.EXPIRED


def test_a_changed_link_is_forged() -> None:
    signed = links()
    trace, exp, sig = parts(signed.url(TRACE, NOW) or "")
    other = "f" * 32
    assert signed.check(other, exp, sig, NOW) is LinkCheck.FORGED  # another trace
    assert signed.check(trace, str(int(exp) + 3600), sig, NOW) is LinkCheck.FORGED  # longer life
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert signed.check(trace, exp, flipped, NOW) is LinkCheck.FORGED
    assert links(b"x" * 32).check(trace, exp, sig, NOW) is LinkCheck.FORGED  # another key
    # an expired link whose signature is wrong is a forgery, not merely expired
    assert signed.check(trace, exp, flipped, NOW + timedelta(days=9)) is LinkCheck.FORGED


@pytest.mark.parametrize(
    ("trace", "exp", "sig"),
    [
        (TRACE, "", "a" * 64),
        (TRACE, "12x", "a" * 64),
        (TRACE, "1" * 13, "a" * 64),
        (TRACE, "1790000000", ""),
        (TRACE, "1790000000", "A" * 64),
        (TRACE, "1790000000", "a" * 63),
        ("<script>", "1790000000", "a" * 64),
        ("a" * 129, "1790000000", "a" * 64),
    ],
)
def test_malformed_links_are_refused(trace: str, exp: str, sig: str) -> None:
    assert links().check(trace, exp, sig, NOW) is LinkCheck.MALFORMED


def test_no_public_url_or_no_usable_id_makes_no_link() -> None:
    none = TraceLinks(key=b"k" * 32, base_url=None, ttl=timedelta(hours=1))
    assert none.url(TRACE, NOW) is None
    assert links().url(None, NOW) is None
    assert links().url("a b", NOW) is None
    assert links().url("x" * 200, NOW) is None


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_TRACE_KEY", KEY)
    first = TraceLinks.from_env("https://a.example", ttl_hours=1)
    second = TraceLinks.from_env("https://a.example", ttl_hours=1)
    assert first.key == second.key == KEY.encode()
    monkeypatch.delenv("OPSGATE_TRACE_KEY")
    monkeypatch.delenv("OPSGATE_GRANT_KEY", raising=False)
    with capture_logs() as logs:
        ephemeral = TraceLinks.from_env("https://a.example", ttl_hours=1)
    assert ephemeral.key != first.key
    assert len(ephemeral.key) == 32
    assert [e["event"] for e in logs] == ["trace_links_key_ephemeral"]
    # links to this machine (the demo) live as long as the process: nothing to warn about
    with capture_logs() as logs:
        TraceLinks.from_env("http://127.0.0.1:8080", ttl_hours=1)
        TraceLinks.from_env("http://localhost:8080", ttl_hours=1)
    assert logs == []


# --- the link in messages ------------------------------------------------------------------


def test_trace_text_links_the_page_when_delivery_signed_it() -> None:
    assert trace_text({"correlation_id": TRACE}) == f"trace `{TRACE}`"
    url = "https://opsgate.example.com/traces/abc?exp=1&sig=ff"
    assert trace_text({"correlation_id": TRACE, "trace_url": url}) == (
        f"trace `{TRACE}` <https://opsgate.example.com/traces/abc?exp=1&amp;sig=ff|View trace>"
    )
    # a link that is not one (or would break out of the mrkdwn link) is left out
    for odd in ("javascript:alert(1)", "https://x.example/|<!channel>", 7):
        assert trace_text({"correlation_id": TRACE, "trace_url": odd}) == f"trace `{TRACE}`"


# --- rendering -----------------------------------------------------------------------------


def span(
    sid: str,
    kind: str,
    name: str,
    start_ms: float,
    duration_ms: float,
    *,
    parent: str | None = None,
    status: str = "ok",
    **attributes: object,
) -> Span:
    started = NOW + timedelta(milliseconds=start_ms)
    return Span(
        id=sid,
        trace_id=TRACE,
        parent_id=parent,
        kind=kind,
        name=name,
        plan_id="p" * 32,
        step_id=None if kind == "plan" else "s1",
        started_at=started,
        ended_at=started + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        status=status,
        attributes=dict(attributes),
    )


def sample() -> list[Span]:
    return [
        span("p" * 16, "plan", "plan web-restart v1", 0, 1000, status="failed", spent_usd=0.5),
        span(
            "s1",
            "step",
            "Restart <b>checkout</b>",
            100,
            400,
            parent="p" * 16,
            status="failed",
            tool="http.post",
            check="expected 200",
        ),
        span(
            "a1",
            "tool_call",
            "http.post",
            100,
            150,
            parent="s1",
            status="timeout",
            attempt=1,
            summary="timed out",
            cost_usd=0.125,
        ),
        span(
            "a2",
            "tool_call",
            "http.post",
            300,
            200,
            parent="s1",
            status="http_503",
            attempt=2,
            summary="<script>alert(1)</script>",
            cost_usd=0.25,
        ),
        span("s2", "step", "Verify", 990, 10, parent="p" * 16, status="skipped"),
    ]


def bars(page: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"left:([\d.]+)%;width:([\d.]+)%", page)]


def test_the_waterfall_nests_and_positions_every_span() -> None:
    page = render_trace(TRACE, list(reversed(sample())), expires=NOW + timedelta(days=1))
    kinds = re.findall(r'<tr data-kind="(\w+)"', page)
    assert kinds == ["plan", "step", "tool_call", "tool_call", "step"]
    assert bars(page) == [(0.0, 100.0), (10.0, 40.0), (10.0, 15.0), (30.0, 20.0), (99.0, 1.0)]
    assert "attempt 1 · timed out" in page
    assert "attempt 2" in page
    assert ">timeout<" in page
    assert ">http_503<" in page
    assert page.count('class="status bad"') == 4  # plan, step and both attempts
    assert "$0.1250" in page
    assert "$0.3750" in page
    assert "$0.5000" in page  # the plan's spend
    assert "400 ms" in page
    assert "1.00 s" in page
    assert "link valid until 2026-12-03 12:00 UTC" in page


def test_user_text_is_escaped_and_nothing_is_loaded_from_elsewhere() -> None:
    page = render_trace(TRACE, sample())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>checkout</b>" not in page
    assert "Restart &lt;b&gt;checkout&lt;/b&gt;" in page
    assert not re.search(r"<(script|link|img|iframe)\b|src=|url\(|@import", page)


def test_a_tiny_span_at_the_end_stays_inside_its_track() -> None:
    spans = [span("p" * 16, "plan", "plan", 0, 10_000), span("s", "step", "x", 10_000, 0)]
    (_, _), (left, width) = bars(render_trace(TRACE, spans))
    assert left + width <= 100.0
    assert width > 0


def test_plain_pages_for_refusal_and_absence() -> None:
    assert "not valid" in render_forbidden()
    assert "&lt;x&gt;" in render_missing("<x>")
    assert "No spans recorded" in render_trace(TRACE, [])


# --- the route -----------------------------------------------------------------------------


@pytest.fixture
async def stack(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    monkeypatch.setenv("OPSGATE_TRACE_KEY", KEY)
    slack = {"channel_rate_per_s": 1000, "public_url": "https://opsgate.example.com/"}
    async with Stack(db_url=db_url, tmp_path=tmp_path, slack=slack) as running:
        yield running


async def get(stack: Stack, path: str) -> tuple[int, str, dict[str, str]]:
    assert stack.server is not None
    assert stack.http is not None
    async with stack.http.get(stack.server.make_url(path)) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_messages_link_a_page_that_shows_the_plan(stack: Stack) -> None:
    status, _ = await stack.command("checkout-api is down <img src=x>")
    assert status == 200
    await stack.settle()
    found = re.findall(
        r"<(https://opsgate\.example\.com/traces/[^|>]+)\|View trace>", stack.texts()
    )
    assert found, "no View trace link in the thread"
    root_links = re.findall(r"\|View trace>", str(stack.root().blocks))
    assert root_links, "the root message links its trace too"
    card = stack.card("Restart checkout-api")
    for voter in (APPROVER_A, APPROVER_B):
        assert (await stack.click(card, "approve_step", user=voter))[0] == 200
    await stack.settle()
    shown = [m for m in [stack.root(), *stack.thread()] if "trace `" in str(m.blocks)]
    assert len(shown) >= 4
    unlinked = [m.text for m in shown if "|View trace>" not in str(m.blocks)]
    assert unlinked == [], "every message that shows a trace id links it"
    url = found[0].replace("&amp;", "&")
    path = url.removeprefix("https://opsgate.example.com")
    trace, _exp, sig = parts(url)

    status, page, headers = await get(stack, path)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert headers["Cache-Control"] == "no-store"
    assert "Probe checkout-api health" in page
    assert 'data-kind="tool_call"' in page
    assert "<img src=x>" not in page

    with capture_logs() as logs:
        forged, body, _ = await get(stack, path.replace(sig, "0" * 64))
        expired_link = TraceLinks(KEY.encode(), "https://x", timedelta(hours=-1)).url(trace, NOW)
        assert expired_link is not None
        expired, _, _ = await get(stack, expired_link.removeprefix("https://x"))
        bare, _, _ = await get(stack, f"/traces/{trace}")
    assert (forged, expired, bare) == (403, 403, 403)
    assert "not valid" in body
    assert "Probe" not in body
    refused = [e for e in logs if e["event"] == "request_refused"]
    assert [e["reason"] for e in refused] == [
        "trace link forged",
        "trace link expired",
        "trace link malformed",
    ]

    unknown = "e" * 32  # a well-signed link to a trace with no spans
    fresh = TraceLinks(KEY.encode(), "https://x", timedelta(hours=1))
    fresh_url = fresh.url(unknown, datetime.now(UTC))
    assert fresh_url is not None
    assert (await get(stack, fresh_url.removeprefix("https://x")))[0] == 404
