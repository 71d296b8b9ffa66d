"""The README's demo scenarios clicked through in headless Chromium, at desktop and phone widths.

Each width walks the main scenario (alert -> incident -> Jordan refused -> two approvals ->
verified -> resolved), reloads the page (ephemeral messages are gone, as in Slack), then the
second scenario (a policy refuses `rm -rf`; the requester's own approval of the high-risk cache
flush is refused; an approver rejects it with a reason). On the way it checks that the channel
and the persona switcher stay on screen and that every emoji renders as a colour glyph, not as a
missing-glyph box (Debian's Chromium needs ``fonts-noto-color-emoji`` for that).

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``OPSGATE_CHROMIUM``) and playwright;
``.ci/run`` installs Chromium and the emoji font, so in CI this test always runs. Screenshots are
saved under ``artifacts/``: ``demo-<width>-main.png``, ``-reloaded.png`` and ``-second.png``.
"""

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.demo.runner import DemoHandles
from tests.bot.demo_helpers import running_demo

CHROMIUM = os.environ.get("OPSGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SAM, ALEX, RILEY, JORDAN = "U0SAM0002", "U0ALEX003", "U0RILEY01", "U0JORDAN4"
PERSONAS = (RILEY, SAM, ALEX, JORDAN)
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is required in CI but missing at {CHROMIUM}", pytrace=False)
    pytest.skip(
        f"Chromium not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
playwright = pytest.importorskip("playwright.async_api")
Page = Any  # playwright.async_api.Page, imported lazily above

# Every pictograph shown in a message is drawn on a canvas in the page's own font stack, in
# black. A colour emoji font ignores the fill colour, so it leaves saturated pixels; a missing
# glyph is an empty box or nothing (the same pixels as an unassigned code point), and a
# monochrome fallback is black and grey. Achromatic emoji (white and black circles, ...) are
# held only to "not the missing glyph".
GLYPHS_JS = r"""
() => {
  const found = new Set();
  const shown = '[data-testid="message"], [data-testid="ephemeral"]';
  for (const node of document.querySelectorAll(shown)) {
    for (const m of node.textContent.matchAll(/\p{Extended_Pictographic}/gu)) found.add(m[0]);
  }
  const sample = document.querySelector('.msg .text') || document.body;
  const font = getComputedStyle(sample).fontFamily;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 48;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const draw = (text) => {
    ctx.clearRect(0, 0, 48, 48);
    ctx.font = `32px ${font}`;
    ctx.textBaseline = "top";
    ctx.fillStyle = "#000";
    ctx.fillText(text, 4, 4);
    return ctx.getImageData(0, 0, 48, 48).data;
  };
  const missing = draw("\u0378");  // an unassigned code point: the missing-glyph rendering
  return [...found].map((ch) => {
    const d = draw(ch + "\uFE0F");
    let ink = 0, colour = 0, same = true;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 0) ink++;
      const rgb = [d[i], d[i + 1], d[i + 2]];
      if (d[i + 3] > 128 && Math.max(...rgb) - Math.min(...rgb) > 48) colour++;
      if (d[i + 3] !== missing[i + 3]) same = false;
    }
    const code = ch.codePointAt(0).toString(16);
    return { glyph: ch, code, ink, colour, missing: same || ink === 0 };
  });
}
"""
ACHROMATIC = {"26aa", "26ab", "25fb", "25fc", "25fd", "25fe", "2b1c", "2b1b"}

# True when the element's centre is on screen and not covered by anything else.
REACHABLE_JS = """
(el) => {
  const r = el.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  if (r.width === 0 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
  const hit = document.elementFromPoint(x, y);
  return !!hit && el.contains(hit);
}
"""


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=0.2) as handles:
        yield handles


async def assert_glyphs_render(page: Page) -> int:
    """Fail on any pictograph in a message drawn as a missing glyph; return how many checked."""
    glyphs = await page.evaluate(GLYPHS_JS)
    assert glyphs, "no emoji on the page to check"
    bad = [g for g in glyphs if g["missing"] or (g["colour"] == 0 and g["code"] not in ACHROMATIC)]
    assert not bad, (
        "emoji render as missing or monochrome glyphs (install fonts-noto-color-emoji): "
        + ", ".join(f"{g['glyph']} U+{g['code'].upper()}" for g in bad)
    )
    return len(glyphs)


async def assert_reachable(page: Page, testid: str) -> None:
    """The element is on screen and nothing covers it (at a phone width too)."""
    node = page.get_by_test_id(testid).first
    await node.wait_for(timeout=10_000)
    handle = await node.element_handle()
    try:  # polled: a drawer slides in over a fraction of a second
        await page.wait_for_function(REACHABLE_JS, arg=handle, timeout=15_000)  # a loaded CI
    except playwright.TimeoutError:
        pytest.fail(f"{testid} is off screen or covered", pytrace=False)


async def assert_layout(page: Page, *, phone: bool) -> None:
    """The persona switcher and the channel are usable; on a phone the sidebar is a drawer."""
    for user in PERSONAS:
        await assert_reachable(page, f"persona-{user}")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORTS["phone" if phone else "desktop"]["width"], "the page scrolls sideways"
    if not phone:
        await assert_reachable(page, "channel-item")
        return
    assert not await page.get_by_test_id("sidebar").is_visible()
    await page.get_by_test_id("nav-toggle").click()
    await assert_reachable(page, "channel-item")
    await page.get_by_test_id("scrim").click(position={"x": 370, "y": 400})  # beside the drawer
    await page.get_by_test_id("sidebar").wait_for(state="hidden", timeout=5_000)


async def in_channel(page: Page) -> None:
    """Show the channel (on a phone an open thread takes its place)."""
    pane = page.get_by_test_id("thread-pane")
    if await page.evaluate("innerWidth") <= 720 and await pane.is_visible():
        await page.locator("#thread-close").click()
    await page.get_by_test_id("channel-name").wait_for(timeout=5_000)


async def command(page: Page, text: str) -> None:
    """Type a slash command in the channel's composer."""
    await in_channel(page)
    await page.get_by_test_id("composer").fill(text)
    await page.get_by_test_id("composer").press("Enter")


async def act_as(page: Page, user: str) -> None:
    await page.get_by_test_id(f"persona-{user}").click()


def shot(width: str, name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"demo-{width}-{name}.png")


async def main_scenario(page: Page, demo: DemoHandles, *, phone: bool) -> None:
    thread = page.get_by_test_id("thread-pane")
    approve = thread.get_by_test_id("button-approve_step")
    # the service breaks, the alert fires, the incident and its approval card appear
    await approve.first.wait_for(timeout=30_000)
    assert demo.service.state.restarts.get("checkout-api", 0) == 0
    await assert_layout(page, phone=phone)

    await act_as(page, JORDAN)
    await approve.first.click()
    await (
        thread.get_by_test_id("ephemeral")
        .filter(has_text="approvers")
        .first.wait_for(timeout=10_000)
    )
    await act_as(page, SAM)
    await approve.first.click()
    await thread.get_by_text("1/2").first.wait_for(timeout=10_000)
    await act_as(page, ALEX)
    await approve.first.click()
    verified = (
        thread.get_by_test_id("message")
        .filter(has_text="Verify checkout-api is healthy")
        .filter(has_text="succeeded")
    )
    await verified.first.wait_for(timeout=20_000)
    assert demo.service.state.restarts["checkout-api"] == 1

    await act_as(page, RILEY)
    await command(page, "/incident resolve restarted")
    await page.get_by_test_id("message").filter(has_text="Resolved").first.wait_for(timeout=10_000)
    assert await demo.control.open_incident_in(demo.sandbox.channel_id) is None


async def second_scenario(page: Page, demo: DemoHandles) -> None:
    thread = page.get_by_test_id("thread-pane")
    await act_as(page, RILEY)
    await command(page, "/incident orders-db disk full")
    refused = thread.get_by_test_id("message").filter(has_text=re.compile(r"rm -rf|[Rr]ecursive"))
    await refused.first.wait_for(timeout=20_000)

    await command(page, "/incident web serves stale data")
    card = thread.get_by_test_id("message").filter(has_text="Flush web cache")
    approve = card.get_by_test_id("button-approve_step")
    await approve.first.wait_for(timeout=20_000)
    await approve.first.click()  # Riley typed the command: the requester rule refuses it
    await (
        thread.get_by_test_id("ephemeral")
        .filter(has_text="You requested this incident")
        .first.wait_for(timeout=10_000)
    )

    await act_as(page, SAM)
    await card.get_by_test_id("button-reject_step").first.click()
    modal = page.get_by_test_id("modal")
    await modal.wait_for(timeout=10_000)
    await modal.locator("textarea, input").first.fill("cache is warming on its own")
    await page.get_by_test_id("modal-submit").click()
    await modal.wait_for(state="hidden", timeout=10_000)
    await thread.get_by_text("cache is warming on its own").first.wait_for(timeout=10_000)
    assert demo.service.state.cache_fresh.get("web") is None  # the flush never ran


@pytest.mark.parametrize("width", list(VIEWPORTS))
async def test_readme_scenarios_in_the_browser(demo: DemoHandles, width: str) -> None:
    phone = width == "phone"
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport=VIEWPORTS[width])
        try:
            await page.goto(demo.url)
            await main_scenario(page, demo, phone=phone)
            await assert_glyphs_render(page)
            await page.screenshot(path=shot(width, "main"))

            # Slack keeps no ephemeral message across a reload; the channel's history stays
            await in_channel(page)
            assert await page.get_by_test_id("ephemeral").count() > 0
            await page.reload()
            await page.wait_for_function("window.opsgateSandbox && window.opsgateSandbox.state")
            await in_channel(page)
            await page.get_by_test_id("message").first.wait_for(timeout=10_000)
            assert await page.get_by_test_id("ephemeral").count() == 0
            assert await page.get_by_text("On it").count() == 0
            await page.screenshot(path=shot(width, "reloaded"))

            await second_scenario(page, demo)
            await assert_glyphs_render(page)
            await page.screenshot(path=shot(width, "second"))
        except Exception:
            await page.screenshot(path=shot(width, "failure"))
            raise
        finally:
            await browser.close()
