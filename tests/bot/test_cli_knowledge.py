"""``opsgate knowledge list|show|diff``: what a plan was built from and what changed since,
read from the store (on SQLite and PostgreSQL) without writing anything."""

import asyncio
from pathlib import Path

import pytest

from bot.cli import main
from bot.main import build_control
from tests.bot.test_cli_replay import _dump, _main_scenario, config  # noqa: F401 - fixture

OLD_TITLE = "Restart {service}"
NEW_TITLE = "Restart {service} (rolling, one pod at a time)"


def _edit_and_republish(config_file: Path, db_url: str) -> None:
    """Edit the runbook's restart title, then start a process so it publishes version 2."""
    path = config_file.parent / "runbooks" / "web-restart.yaml"
    text = path.read_text()
    assert f"title: {OLD_TITLE}\n" in text
    path.write_text(text.replace(f"title: {OLD_TITLE}\n", f"title: {NEW_TITLE}\n"))

    async def run() -> None:
        control = build_control(config_path=config_file, database_url=db_url)
        try:
            await control.start()
        finally:
            await control.close()

    asyncio.run(run())


def test_list_show_and_diff_say_what_a_plan_was_built_from_and_what_changed(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,  # noqa: F811 - the fixture
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan_id = _main_scenario(config, db_url)
    _edit_and_republish(config, db_url)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    before = _dump(db_url)
    capsys.readouterr()

    assert main(["knowledge", "list"]) == 0
    listed = capsys.readouterr().out
    assert "runbook:web-restart@2  2 version(s)" in listed
    assert "policy:" in listed

    assert main(["knowledge", "list", "--plan", plan_id[:8]]) == 0
    pinned = capsys.readouterr().out
    assert "runbook:web-restart@1  stale: latest is 2" in pinned
    assert "runbook:cache-flush" not in pinned  # only what this plan pinned

    assert main(["knowledge", "show", "web-restart@1"]) == 0
    shown = capsys.readouterr().out
    assert "# runbook:web-restart@1 (the latest is 2)" in shown
    assert f"title: {OLD_TITLE}" in shown
    assert NEW_TITLE not in shown

    assert main(["knowledge", "diff", "runbook:web-restart@1"]) == 0
    changes = capsys.readouterr().out
    assert f"-  title: {OLD_TITLE}" in changes or f"-    title: {OLD_TITLE}" in changes
    assert NEW_TITLE in changes
    assert "+++ runbook:web-restart@2" in changes

    assert main(["knowledge", "diff", "web-restart@2", "web-restart@2"]) == 0
    assert "the same content" in capsys.readouterr().out

    assert _dump(db_url) == before  # read, never written


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["show", "web-restrat"],
            "not_found: no stored document is named 'web-restrat'; did you mean",
        ),
        (["show", "web-restart@0"], "bad_request: 'web-restart@0': the version after @"),
        (["show", "web-restart@9"], "has no version 9; stored versions: 1"),
        (["list", "--plan", "zzzzzzzz"], "not_found: no plan id starts with 'zzzzzzzz'"),
    ],
)
def test_a_name_or_version_that_is_not_stored_is_refused_in_plain_words(
    monkeypatch: pytest.MonkeyPatch,
    config: Path,  # noqa: F811 - the fixture
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    _main_scenario(config, db_url)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", db_url)
    capsys.readouterr()
    assert main(["knowledge", *argv]) == 1
    assert said in capsys.readouterr().err


def test_without_a_database_it_says_nothing_is_stored_and_creates_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none" / "opsgate.db"
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{missing}")
    assert main(["knowledge", "list"]) == 1
    assert "no database yet" in capsys.readouterr().err
    assert not missing.exists()
