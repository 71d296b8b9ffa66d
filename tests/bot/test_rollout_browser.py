"""The baseline modal in the browser sandbox: real checkboxes, submitted as Slack submits them.

The real app and the fake Slack of the scenario tests, with the sandbox page in front of them
in headless Chromium: an incident runs in shadow, the resolver clicks "Record what you did",
ticks the proposed step, adds a line of free text and submits; the thread shows the recorded
baseline. The page's submission is checked against Slack's ``view_submission`` shape
(``{"type": "checkboxes", "selected_options": [{"text": ..., "value": ...}]}``), ticked and
not. The screenshot of the filled modal is saved as ``artifacts/baseline-modal.png``.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.ids import ActionId, BlockId
from bot.sandbox.personas import Persona
from bot.sandbox.ui import Sandbox
from orchestration.models import HumanAction
from tests.bot.scenario import APPROVER_A, CHANNEL, REQUESTER, SECRET, Stack
from tests.bot.test_demo_browser import ARGS, CHROMIUM
from tests.bot.test_rollout_slack import OPS, ROLLOUT

playwright = pytest.importorskip("playwright.async_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PERSONAS = [Persona(APPROVER_A, "Responder", "approver"), Persona(REQUESTER, "Requester", "")]
Page = Any  # playwright.async_api.Page, imported lazily above


class SandboxStack(Stack):
    """The scenario stack with the browser sandbox on its fake Slack."""

    async def __aenter__(self) -> "SandboxStack":
        self.slack.workspace.add_channel("incidents", channel_id=CHANNEL)
        self.sandbox = Sandbox(
            self.slack, bot_url="http://127.0.0.1:1/", signing_secret=SECRET, personas=PERSONAS
        )
        await super().__aenter__()
        self.sandbox.courier.bot_url = self.url  # known once the app listens
        return self


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[SandboxStack]:
    async with SandboxStack(
        db_url=db_url,
        tmp_path=tmp_path,
        rollout=ROLLOUT,
        slack={"channel_rate_per_s": 1000, "ops_channel": OPS},
    ) as running:
        yield running


async def command(page: Page, text: str) -> None:
    composer = page.get_by_test_id("composer").first
    await composer.fill(text)
    await composer.press("Enter")


async def submit(page: Page) -> dict[str, Any]:
    """Submit the open modal; the ``state.values`` the page sent."""
    async with page.expect_request("**/sandbox/view_submit") as sent:
        await page.get_by_test_id("modal-submit").click()
    data = (await sent.value).post_data_json
    assert isinstance(data, dict)
    values = data["values"]
    assert isinstance(values, dict)
    return values


async def test_the_baseline_modal_ticked_and_submitted_in_the_browser(
    stack: SandboxStack,
) -> None:
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            await page.goto(stack.sandbox.url)
            await page.wait_for_function("window.opsgateSandbox && window.opsgateSandbox.state")
            await command(page, "/incident checkout-api is down")
            thread = page.get_by_test_id("thread-pane")
            await thread.get_by_text("Shadow (proposed; no change made)").first.wait_for(
                timeout=20_000
            )
            await command(page, "/incident resolve restarted by hand")
            button = thread.get_by_test_id(f"button-{ActionId.BASELINE_OPEN.value}")
            await button.first.wait_for(timeout=20_000)
            await button.first.click()

            modal = page.get_by_test_id("modal")
            await modal.wait_for(timeout=10_000)
            box = modal.get_by_test_id(f"checkbox-{ActionId.BASELINE_TAKEN.value}-restart")
            await box.wait_for(timeout=5_000)
            assert not await box.is_checked()
            await modal.get_by_text("Restart checkout-api").click()  # the label ticks the box
            assert await box.is_checked()
            await modal.locator("textarea").fill("drained the bad node")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "baseline-modal.png"))
            values = await submit(page)
            assert values[BlockId.BASELINE_TAKEN.value] == {
                ActionId.BASELINE_TAKEN.value: {
                    "type": "checkboxes",
                    "selected_options": [
                        {
                            "text": {"type": "plain_text", "text": "Restart checkout-api"},
                            "value": "restart",
                        }
                    ],
                }
            }
            assert values[BlockId.BASELINE_OTHER.value] == {
                ActionId.BASELINE_OTHER.value: {
                    "type": "plain_text_input",
                    "value": "drained the bad node",
                }
            }
            await modal.wait_for(state="hidden", timeout=10_000)
            recorded = thread.get_by_test_id("message").filter(has_text="Baseline recorded")
            await recorded.first.wait_for(timeout=10_000)
            shown = await recorded.first.inner_text()
            assert "Restart checkout-api" in shown
            assert "drained the bad node" in shown
            await page.screenshot(path=str(ARTIFACTS / "baseline-recorded.png"))

            # Again, nothing ticked: an empty list, as Slack sends for an optional input.
            await button.first.click()
            await modal.wait_for(timeout=10_000)
            values = await submit(page)
            assert values[BlockId.BASELINE_TAKEN.value] == {
                ActionId.BASELINE_TAKEN.value: {"type": "checkboxes", "selected_options": []}
            }
            await modal.wait_for(state="hidden", timeout=10_000)
        except Exception:
            await page.screenshot(path=str(ARTIFACTS / "baseline-failure.png"))
            raise
        finally:
            await browser.close()
    await stack.settle()
    rows = await stack.control.db.run(
        lambda s: list(s.exec(select(HumanAction).order_by(col(HumanAction.id))))
    )
    # The second answer (nothing ticked, nothing else) replaces the first: it is what they say
    # they did now.
    assert [(r.kind, r.step_key, r.text, r.actor) for r in rows] == [
        ("answered", None, "", APPROVER_A),
    ]
