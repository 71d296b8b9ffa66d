"""The opsgate CLI: check reports problems with file and line; plan prints and runs nothing."""

from pathlib import Path

import pytest

from bot.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_check_passes_on_the_shipped_runbooks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "web-restart" in out
    assert out.strip().endswith("ok")


def test_check_reports_each_problem_with_file_and_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "bad.yaml").write_text(
        "id: bad\nversion: 1\ntitle: Bad\nmatch: {keywords: [x]}\nsteps:\n"
        "  - id: a\n    title: A\n    tool: http.delete\n    args: {}\n    risk: low\n"
    )
    config = tmp_path / "opsgate.yaml"
    config.write_text("mode: supervised\nrunbooks: ./runbooks\napprovers: [U1]\nmodee: x\n")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"{config}:4: modee: unknown key" in out

    config.write_text("mode: supervised\nrunbooks: ./runbooks\n")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"{runbooks / 'bad.yaml'}:8: steps.0.tool" in out
    assert "unknown action 'http.delete'" in out


def test_plan_prints_steps_risks_approvals_and_hash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["plan", "checkout-api is down"]) == 0
    first = capsys.readouterr().out
    assert "Restart checkout-api" in first
    assert "needs_two_approvals" in first
    assert "neither of them the requester" in first
    assert main(["plan", "checkout-api is down"]) == 0
    assert capsys.readouterr().out == first  # same text, same knowledge: same plan and hash


def test_plan_without_a_match_names_the_closest_runbooks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["plan", "the printer jammed"]) == 1
    assert "Closest runbooks" in capsys.readouterr().err


def test_check_passes_on_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(REPO / "opsgate.example.yaml"), "check"]) == 0
    assert "shell.disk_usage" in capsys.readouterr().out


def test_check_reports_a_bad_shell_command_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "opsgate.yaml"
    config.write_text(
        "adapters:\n  shell:\n    commands:\n"
        '      x: {argv: ["/bin/echo", "{a}"], risk: lowish, read_only: true, idempotent: true}\n'
    )
    assert main(["--config", str(config), "check"]) == 1
    assert f"{config}:4: adapters.shell.commands.x.risk" in capsys.readouterr().out
