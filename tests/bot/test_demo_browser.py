"""The demo clicked through in headless Chromium: alert -> incident -> two approvals -> verified.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``OPSGATE_CHROMIUM``) and playwright;
``.ci/run`` installs Chromium, so in CI this test always runs. The screenshot is saved under
``artifacts/``.
"""

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.demo.runner import DemoHandles
from tests.bot.demo_helpers import running_demo

CHROMIUM = os.environ.get("OPSGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SAM, ALEX, RILEY, JORDAN = "U0SAM0002", "U0ALEX003", "U0RILEY01", "U0JORDAN4"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is required in CI but missing at {CHROMIUM}", pytrace=False)
    pytest.skip(
        f"Chromium not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
playwright = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=0.2) as handles:
        yield handles


async def test_main_scenario_in_the_browser(demo: DemoHandles) -> None:
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            await page.goto(demo.url)
            # the service breaks, the alert fires, the incident and its approval card appear
            approve = page.get_by_test_id("thread-pane").get_by_test_id("button-approve_step")
            await approve.first.wait_for(timeout=30_000)
            assert demo.service.state.restarts.get("checkout-api", 0) == 0

            await page.get_by_test_id(f"persona-{JORDAN}").click()
            await approve.first.click()
            await (
                page.get_by_test_id("ephemeral")
                .filter(has_text="approvers")
                .first.wait_for(timeout=10_000)
            )

            await page.get_by_test_id(f"persona-{SAM}").click()
            await approve.first.click()
            await page.get_by_text("1/2").first.wait_for(timeout=10_000)
            await page.get_by_test_id(f"persona-{ALEX}").click()
            await approve.first.click()

            verified = (
                page.get_by_test_id("message")
                .filter(has_text="Verify checkout-api is healthy")
                .filter(has_text="succeeded")
            )
            await verified.first.wait_for(timeout=20_000)
            assert demo.service.state.restarts["checkout-api"] == 1

            await page.get_by_test_id(f"persona-{RILEY}").click()
            await page.get_by_test_id("composer").fill("/incident resolve restarted")
            await page.get_by_test_id("composer").press("Enter")
            await page.get_by_text("Resolved").first.wait_for(timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "demo-main-scenario.png"))
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "demo-failure.png"))
            raise
        finally:
            await browser.close()
    assert demo.service.state.restarts["checkout-api"] == 1
    incident = await demo.control.open_incident_in(demo.sandbox.channel_id)
    assert incident is None  # resolved
