"""``opsgate plan`` with a model configured: the LLM plan, its tokens and USD, which planner;
a matching runbook still wins, and no model call is made for it."""

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.sandbox.llm import FakeModel
from bot.sandbox.llm_scripts import RecordedRun

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model() -> Iterator[FakeModel]:
    """The stand-in on its own event loop (the CLI runs one of its own)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeModel(responder=RecordedRun("http://127.0.0.1:9"))
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=30)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_plan_with_a_model_prints_the_llm_plan_its_tokens_usd_and_planner(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: FakeModel,
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OPSGATE_LLM_BASE_URL", model.base_url)
    monkeypatch.setenv("OPSGATE_LLM_MODEL", "scripted-cli")
    assert main(["plan", "checkout-api is slow"]) == 0
    out = capsys.readouterr().out
    assert "planner: llm (model scripted-cli, prompt v1)" in out
    assert "model calls: 1; tokens " in out
    assert "cost $" in out
    assert "Restart checkout-api" in out
    assert "why: health says the pool is exhausted" in out
    # The model's "risk: low" for the restart is not taken: the declaration's risk is shown.
    restart = out.split("Restart checkout-api")[1].split("\n")[1]
    assert "risk low" not in restart
    assert len(model.requests) == 1  # the Planner only: a preview reads nothing
    assert "tools" not in model.requests[0]
    assert not (tmp_path / "cli.db").exists()  # and writes nothing

    assert main(["plan", "--json", "checkout-api is slow"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["planner"] == "llm"
    assert document["runbook_id"] == "llm-planner"
    assert document["llm"]["tokens"] > 0
    assert document["llm"]["by_role"]["planner"]["calls"] == 1
    assert set(document["rationales"]) == {"probe", "restart", "verify"}

    assert main(["plan", "checkout-api is down"]) == 0  # a runbook matches: it wins
    assert "planner: runbook" in capsys.readouterr().out
    assert len(model.requests) == 2


def test_plan_with_a_model_that_stays_down_says_so(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: FakeModel,
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OPSGATE_LLM_BASE_URL", model.base_url)
    model.responder = None  # an exhausted script: every call is a 500
    assert main(["plan", "checkout-api is slow"]) == 1
    err = capsys.readouterr().err
    assert "the model is unavailable" in err
    assert "over to humans" in err
