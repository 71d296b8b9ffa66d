"""The trace page of a real demo run, opened in headless Chromium from a message's link.

The demo's main scenario is clicked through (alert, two approvals, restart, verify); then the
``View trace`` link of the thread's messages is followed. The page must show the plan's steps
and tool calls as a waterfall, load nothing from elsewhere, and refuse the same link once its
signature is changed. The screenshot is saved as ``docs/trace.png`` (the README shows it).
"""

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.demo.runner import DemoHandles
from tests.bot.demo_helpers import running_demo
from tests.bot.test_demo_browser import ARGS, CHROMIUM, main_scenario

playwright = pytest.importorskip("playwright.async_api")

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=0.2) as handles:
        yield handles


async def test_trace_page_from_a_demo_run(demo: DemoHandles) -> None:
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        outside: list[str] = []
        try:
            await page.goto(demo.url)
            await main_scenario(page, demo, phone=False)
            thread = page.get_by_test_id("thread-pane")
            link = thread.get_by_role("link", name="View trace").last
            await link.wait_for(timeout=10_000)
            href = await link.get_attribute("href")
            assert href is not None
            assert "/traces/" in href
            assert "sig=" in href

            trace = await browser.new_page(viewport={"width": 1280, "height": 720})
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(href))
            trace.on(
                "request",
                lambda req: outside.append(req.url) if not req.url.startswith(origin) else None,
            )
            response = await trace.goto(href)
            assert response is not None
            assert response.status == 200
            rows = trace.locator("tbody tr")
            kinds = await rows.evaluate_all("rs => rs.map(r => r.dataset.kind)")
            assert "step" in kinds
            assert "tool_call" in kinds
            text = await trace.locator("body").inner_text()
            assert "Restart checkout-api" in text or "restart" in text.lower()
            assert "attempt 1" in text
            # every bar lies within its track
            bars = await trace.locator(".bar").evaluate_all(
                "bs => bs.map(b => [b.offsetLeft, b.offsetWidth, b.parentElement.clientWidth])"
            )
            assert bars
            assert all(x >= 0 and x + w <= track + 1 for x, w, track in bars)
            DOCS.mkdir(exist_ok=True)
            await trace.screenshot(path=str(DOCS / "trace.png"), full_page=True)
            assert outside == [], f"the trace page loaded {outside}"

            query = parse_qs(urlsplit(href).query)
            forged = href.replace(query["sig"][0], "0" * 64)
            refused = await trace.goto(forged)
            assert refused is not None
            assert refused.status == 403
            assert "not valid" in await trace.locator("h1").inner_text()
            assert trace_id_of(href) not in await trace.content()
        finally:
            await browser.close()


def trace_id_of(href: str) -> str:
    return urlsplit(href).path.rsplit("/", 1)[1]
