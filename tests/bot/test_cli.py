"""The opsgate CLI: check reports problems with file and line; plan prints and runs nothing;
neither writes anything to the database (nor creates one)."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select
from sqlmodel import SQLModel

from bot.cli import main
from bot.main import build_control
from tests.orchestration.helpers import write_runbook

REPO = Path(__file__).resolve().parents[2]


def test_check_passes_on_the_shipped_runbooks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "web-restart" in out
    # The built-in defaults name no approver: valid, but medium and high steps could never run.
    assert out.startswith("warning: (built-in defaults): approvers: empty: medium and high risk")
    assert out.strip().endswith("ok, with 1 warning(s) above")


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
    assert f"{runbooks / 'bad.yaml'}:8: steps[0].tool" in out
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


# --- plan and check write nothing ----------------------------------------------------------


def _setup(tmp_path: Path) -> Path:
    """A config with one runbook folder; returns the config path."""
    write_runbook(tmp_path / "runbooks", 9000)
    config = tmp_path / "opsgate.yaml"
    config.write_text("runbooks: ./runbooks\napprovers: [U1, U2]\n")
    return config


def _store_knowledge(db_url: str, config: Path) -> None:
    """What a replica does at start: store the files' knowledge in the database."""

    async def run() -> None:
        control = build_control(config_path=config, database_url=db_url)
        try:
            await control.start()
        finally:
            await control.close()

    asyncio.run(run())


def _row_counts(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in SQLModel.metadata.tables.items()
                if name in names
            }
    finally:
        engine.dispose()


def _sqlite_file(db_url: str) -> Path | None:
    return Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite") else None


@pytest.mark.parametrize("verb", [["plan", "checkout-api is down"], ["check"]])
def test_plan_and_check_create_no_database_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verb: list[str]
) -> None:
    config = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default database would go to ./.opsgate/
    assert main(["--config", str(config), *verb]) == 0
    assert not (tmp_path / ".opsgate").exists()
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'db' / 'x.db'}")
    assert main(["--config", str(config), *verb]) == 0
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("verb", [["plan", "checkout-api is down"], ["check"]])
def test_plan_and_check_write_nothing_to_an_existing_database(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db_url: str,
    verb: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _setup(tmp_path)
    _store_knowledge(db_url, config)
    path = tmp_path / "runbooks" / "web-restart.yaml"
    path.write_text(path.read_text().replace("title: Probe {service}", "title: Check {service}"))
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    before = _row_counts(db_url)
    sqlite = _sqlite_file(db_url)
    stat = sqlite.stat() if sqlite else None
    assert before["knowledge"] == 2  # the runbook and the policy pack, version 1 each
    capsys.readouterr()

    assert main(["--config", str(config), *verb]) == 0
    assert main(["--config", str(config), *verb]) == 0
    assert _row_counts(db_url) == before
    if sqlite is not None and stat is not None:
        assert (sqlite.stat().st_mtime_ns, sqlite.stat().st_size) == (
            stat.st_mtime_ns,
            stat.st_size,
        )
    if verb[0] == "plan":
        out = capsys.readouterr().out
        assert "1. Check checkout-api health" in out  # planned from the files
        assert "runbook:web-restart@2" in out
        assert (
            "runbook:web-restart: not stored yet; a replica reading these files adds it as v2"
            in out
        )


def test_plan_names_the_stored_versions_of_files_that_are_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'x.db'}"
    path = tmp_path / "runbooks" / "web-restart.yaml"
    original = path.read_text()
    _store_knowledge(db_url, config)
    path.write_text(original.replace("Restart an unhealthy", "Restart a sick"))
    _store_knowledge(db_url, config)  # version 2
    path.write_text(original)  # these files are behind now
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "checkout-api is down"]) == 0
    out = capsys.readouterr().out
    assert "Restart an unhealthy web service" in out
    assert "runbook:web-restart@1, policy:pack@1" in out
    assert (
        "runbook:web-restart: these files hold v1; the database has v2, which running replicas "
        "plan from" in out
    )


def test_check_lists_retirement_markers_and_reports_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _setup(tmp_path)
    (tmp_path / "runbooks" / "old.yaml").write_text("id: old\nversion: 1\nretired: true\n")
    assert main(["--config", str(config), "check"]) == 0
    assert "web-restart (retired: old)" in capsys.readouterr().out
    (tmp_path / "runbooks" / "old.yaml").write_text("id: old\nversion: 1\nretired: yes please\n")
    assert main(["--config", str(config), "check"]) == 1
    assert f"{tmp_path / 'runbooks' / 'old.yaml'}:3: retired" in capsys.readouterr().out
