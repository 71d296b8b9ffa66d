"""``opsgate replay``: the demo's main scenario replayed with a failure forced at verify."""

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bot.cli import main
from bot.demo.runner import write_runbooks
from bot.main import build_control
from orchestration.enums import VoteChoice
from tests.orchestration.helpers import DemoService

REQUESTER, SAM, ALEX = "U0RILEY01", "U0SAM0002", "U0ALEX003"


def _main_scenario(config: Path, db_url: str, text: str = "checkout-api is down") -> str:
    """The demo's main scenario against a broken local service; returns the plan id."""

    async def run() -> str:
        service = await DemoService().start()
        write_runbooks(config.parent / "runbooks", f"http://127.0.0.1:{service.port}")
        control = build_control(config_path=config, database_url=db_url)
        try:
            await control.start()
            opened = await control.open_incident(text=text, requester=REQUESTER, channel="C1")
            trail = await control.audit_trail(opened.plan_id)
            nonce = next(e.nonce for e in trail if e.event == "approval_requested")
            assert nonce is not None
            for voter in (SAM, ALEX):
                await control.vote(nonce=nonce, voter=voter, choice=VoteChoice.APPROVE)
            assert (await control.plan_view(opened.plan_id)).status == "succeeded"
            return opened.plan_id
        finally:
            await control.close()
            await service.stop()

    return asyncio.run(run())


def _dump(db_url: str) -> dict[str, list[str]]:
    from sqlmodel import SQLModel  # noqa: PLC0415

    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = {
            t.name: sorted(repr(tuple(r)) for r in conn.execute(t.select()))
            for t in SQLModel.metadata.sorted_tables
        }
    engine.dispose()
    return out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "opsgate.yaml"
    path.write_text(
        "runbooks: ./runbooks\n"
        f"approvers: [{REQUESTER}, {SAM}, {ALEX}]\n"
        "execution: {backoff_initial_s: 5, backoff_max_s: 30}\n"  # virtual time in a replay
    )
    return path


def test_replay_of_the_main_scenario_with_verify_503_shows_compensation_and_escalation(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan_id = _main_scenario(config, db_url)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    before = _dump(db_url)
    capsys.readouterr()

    assert main(["--config", str(config), "replay", plan_id, "--fail-at", "verify:status=503"]) == 0
    out = capsys.readouterr().out
    assert f"Replay of plan {plan_id}" in out
    assert "forced failure: verify:status=503" in out
    assert "original: succeeded, 1 attempt(s) [1:ok]" in out
    assert "replay:   failed, 3 attempt(s) [1:failed, 2:failed, 3:failed], expect_not_met" in out
    assert "compensation: original none; replay none planned (nothing to undo)" in out
    assert "escalation:   original no; replay yes: 'Verify checkout-api is healthy' failed" in out
    assert "- plan succeeded -> failed" in out
    assert "Nothing was written to the live store" in out
    assert _dump(db_url) == before

    assert main(["--config", str(config), "replay", plan_id[:8], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plan_id"] == plan_id
    assert report["replay"]["status"] == "succeeded"
    assert report["differences"] == []
    assert _dump(db_url) == before


def test_replay_refuses_a_bad_fail_at_and_an_unknown_plan(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    plan_id = _main_scenario(config, db_url)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["--config", str(config), "replay", plan_id, "--fail-at", "nope:status=503"]) == 1
    assert "bad_request: --fail-at nope: the plan has no step 'nope'" in capsys.readouterr().err
    assert main(["--config", str(config), "replay", plan_id, "--fail-at", "verify:boom"]) == 1
    assert "error, timeout or status=CODE" in capsys.readouterr().err
    assert main(["--config", str(config), "replay", "ffffffff"]) == 1
    assert "not_found: no plan or incident 'ffffffff'" in capsys.readouterr().err
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["--config", str(config), "replay", plan_id]) == 1
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_audit_prints_the_timeline_and_json_lines(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    plan_id = _main_scenario(config, db_url)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    before = _dump(db_url)
    capsys.readouterr()
    assert main(["--config", str(config), "audit", plan_id]) == 0
    out = capsys.readouterr().out
    assert f"Audit timeline of plan {plan_id}" in out
    assert f"vote_recorded          {SAM} (human)" in out
    assert "scope=http.post" in out
    assert main(["--config", str(config), "audit", plan_id, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "incident_opened"
    assert lines[0]["actor"] == REQUESTER
    assert {line["source"] for line in lines} == {"audit", "tool_call", "cost"}
    correlation = lines[0]["correlation_id"]
    assert main(["--config", str(config), "audit", "--correlation-id", correlation, "--json"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == lines
    assert main(["--config", str(config), "audit"]) == 2
    assert "name a plan or incident id" in capsys.readouterr().err
    assert _dump(db_url) == before


def test_audit_and_replay_print_no_credential_typed_into_the_incident(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The terminal is an exit: a password and a bearer token typed into the incident text
    appear in neither the audit timeline nor the replay, as text or JSON."""
    password, bearer = "Zq7typed-password", "Zq7typed.bearer"
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    text = f"checkout-api is down, password={password} Authorization: Bearer {bearer}"
    plan_id = _main_scenario(config, db_url, text=text)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    capsys.readouterr()
    printed = []
    for args in (
        ["audit", plan_id],
        ["audit", plan_id, "--json"],
        ["replay", plan_id, "--fail-at", "verify:status=503"],
        ["replay", plan_id, "--json"],
    ):
        assert main(["--config", str(config), *args]) == 0, args
        printed.append(capsys.readouterr().out)
    assert "checkout-api is down" in printed[0]  # the typed text is there, its secrets not
    for args, out in zip(
        ("audit", "audit --json", "replay", "replay --json"), printed, strict=True
    ):
        assert password not in out, args
        assert bearer not in out, args
