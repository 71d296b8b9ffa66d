"""``opsgate rollout status`` and the rollout warnings of ``opsgate check``, from a terminal."""

import json
from pathlib import Path

import pytest

from bot.cli import main

RUNBOOK = """\
id: web-restart
version: 1
title: Restart
match: {keywords: [down]}
steps:
  - {id: probe, title: Probe, tool: http.get, args: {url: "http://127.0.0.1:9000/x"}, risk: low}
  - {id: restart, title: Restart, tool: http.post, args: {url: "http://h:9000/r"}, risk: medium}
"""
CONFIG = """\
runbooks: ./runbooks
approvers: [U1, U2]
rollout:
  scopes:
    - {id: restarts, runbook: web-restart, tools: [state_changing], stage: shadow}
    - {id: ghost, runbook: no-such-runbook, stage: supervised}
    - {id: in-c9, runbook: web-restart, channel: C9, tools: state_changing, stage: gated}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "web-restart.yaml").write_text(RUNBOOK)
    (tmp_path / "opsgate.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'opsgate.db'}")
    return tmp_path


def test_status_without_a_database_shows_each_scope_in_its_configured_stage(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", "opsgate.yaml", "rollout", "status"]) == 0
    captured = capsys.readouterr()
    assert "note: no database yet" in captured.err
    assert "restarts  [shadow]  runbook web-restart, state-changing steps" in captured.out
    assert "✗ days in stage: 0.0 (at least 30)" in captured.out
    assert "ghost  [supervised]" in captured.out
    assert not (project / "opsgate.db").exists()  # it reads only


def test_status_json_lines_and_plan_names_the_stage(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", "opsgate.yaml", "rollout", "status", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["scope"], r["stage"], r["ready"]) for r in rows] == [
        ("restarts", "shadow", False),
        ("ghost", "supervised", False),
        ("in-c9", "gated", False),
    ]
    assert main(["--config", "opsgate.yaml", "plan", "svc is down"]) == 0
    out = capsys.readouterr().out
    assert (
        "stage shadow (nothing will run): scope restarts "
        "(runbook web-restart, state-changing steps)" in out
    )
    assert "stage supervised: global mode (no rollout scope covers read-only steps here)" in out
    assert main(["--config", "opsgate.yaml", "plan", "svc is down", "--channel", "C9"]) == 0
    out = capsys.readouterr().out
    assert "gated_runs_alone" in out
    assert "stage gated (runs alone up to medium risk): scope in-c9" in out


def test_check_warns_about_a_scope_that_covers_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", "opsgate.yaml", "check"]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: opsgate.yaml:6: rollout.scopes[1]: ghost: no runbook 'no-such-runbook', "
        "so this scope covers no step"
    ) in out
    (project / "opsgate.yaml").write_text(CONFIG + "mode: gated\nexit_typo: 1\n")
    assert main(["--config", "opsgate.yaml", "check"]) == 1
    assert "exit_typo" in capsys.readouterr().out


def test_check_says_gated_mode_now_acts_alone(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config kept from before staged trust learns that gated no longer asks for approval."""
    (project / "opsgate.yaml").write_text("runbooks: ./runbooks\napprovers: [U1]\nmode: gated\n")
    assert main(["--config", "opsgate.yaml", "check"]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: opsgate.yaml:3: mode: gated runs steps up to medium risk without approval" in out
    )
    assert "To keep approvals, use mode: supervised" in out
