"""What a user sees from the command line: JSON-shaped plans, a dry-run digest that says where
it would go, one plain line for a taken port, plain-words token errors, no Bolt warning."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_app
from bot.cli import main
from bot.main import build_control
from bot.settings import SettingsError, SlackSettings

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSGATE_"))}
    return {**clean, "PYTHONPATH": str(REPO), **extra}


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- plan --------------------------------------------------------------------------------


def test_plan_prints_args_as_json_not_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["plan", "checkout-api is down"]) == 0
    out = capsys.readouterr().out
    assert 'http.post {"url": "http://127.0.0.1:9000/svc/checkout-api/restart"}' in out
    assert 'expect {"status": 200}' in out
    assert "{'" not in out
    assert "True" not in out
    assert not (tmp_path / "none.db").exists()


def test_plan_json_is_the_whole_plan_as_one_document(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("OPSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    assert main(["plan", "checkout-api is down"]) == 0
    text = capsys.readouterr().out
    assert main(["plan", "--json", "checkout-api is down"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["runbook_id"] == "web-restart"
    assert plan["plan_hash"] in text  # the same plan as the text form
    assert plan["params"] == {"service": "checkout-api"}
    assert [s["key"] for s in plan["steps"]] == ["probe", "restart", "verify"]
    restart = plan["steps"][1]
    assert restart["verdict"] == "require_approval"
    assert restart["quorum"] == 2
    assert restart["exclude_requester"] is True
    assert plan["notes"] == [
        "no database yet: versions are those these files would be stored under"
    ]


# --- digest --dry-run ----------------------------------------------------------------------


def test_the_command_line_loads_no_runtime_slack_or_model_client_until_a_verb_needs_them(
    tmp_path: Path,
) -> None:
    """``opsgate digest`` starts in a second, not two: importing the command line leaves the
    runtime (bot.main), Slack's SDK, the model clients, the store (SQLAlchemy, Alembic) and the
    adapters' client libraries unloaded (the config schemas are ``adapters.settings``)."""
    heavy = (
        *("bot.main", "orchestration.control", "slack_bolt", "slack_sdk", "openai"),
        *("sqlalchemy", "alembic", "aiohttp", "hvac", "sqlglot", "psycopg", "lightkube"),
    )
    probe = f"import sys, bot.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "", done.stdout


def test_a_digest_dry_run_on_a_current_schema_loads_no_alembic_slack_or_adapter_library(
    tmp_path: Path,
) -> None:
    """The dry run reads the store and prints text: a schema already at this release's head is
    recognised without Alembic, and no Block Kit builder, Slack client, model client or adapter
    library is loaded."""
    from orchestration.db import Database  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    db = Database(url)
    db.create_schema()
    db.engine.dispose()
    heavy = (
        *("alembic", "slack_sdk", "slack_bolt", "openai", "bot.main", "bot.blocks.layout"),
        *("aiohttp", "hvac", "sqlglot", "lightkube", "orchestration.control"),
    )
    probe = (
        "import sys, bot.cli; code = bot.cli.main(['digest', '--dry-run']); "
        f"print(code, ','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=_env(OPSGATE_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "opsgate daily digest for" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0", done.stdout


def test_digest_dry_run_without_a_channel_says_none_would_be_posted_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["digest", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "No database at .opsgate/opsgate.db yet: there is nothing to report." in out
    assert (
        "No digest would be posted: no channel is configured. Set digest.channel or "
        "slack.ops_channel in ./opsgate.yaml (none was found: the built-in defaults are in use)."
    ) in out
    assert not (tmp_path / ".opsgate").exists()

    config = tmp_path / "opsgate.yaml"
    config.write_text("digest: {enabled: false, channel: C0OPS}\n")
    assert main(["digest", "--dry-run"]) == 0
    assert "No digest would be posted: digest.enabled is false in opsgate.yaml." in (
        capsys.readouterr().out
    )
    assert main(["digest"]) == 1  # posting says the same, before asking for a token
    assert "Not posted: digest.enabled is false in opsgate.yaml." in capsys.readouterr().err

    config.write_text('digest: {channel: C0OPS, time: "08:30", timezone: Europe/Paris}\n')
    assert main(["digest", "--dry-run"]) == 0
    assert "It would be posted to C0OPS daily at 08:30 Europe/Paris." in capsys.readouterr().out


# --- serve: settings, help, warnings --------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "SLACK_BOT_TOKEN must be set to the bot token (xoxb-...)"),
        ("abc", "SLACK_BOT_TOKEN must start with xoxb-"),
        ("xoxp-123", "SLACK_BOT_TOKEN must start with xoxb- (the Bot User OAuth Token from OAuth"),
    ],
)
def test_a_bad_bot_token_is_named_for_what_is_wrong_without_its_value(
    monkeypatch: pytest.MonkeyPatch, token: str, says: str
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    with pytest.raises(SettingsError) as caught:
        SlackSettings.from_env()
    assert says in str(caught.value)
    if token:
        assert token not in str(caught.value)
    if token.startswith("xoxp-"):
        assert "this looks like a user token" in str(caught.value)


def test_socket_mode_names_a_token_of_the_wrong_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-2")
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN must start with xapp-"):
        SlackSettings.from_env(socket_mode=True)


def test_serve_help_gives_every_option_a_meaning_and_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--port PORT HTTP port (default 3000)" in out
    assert "--host HOST interface to listen on (default 127.0.0.1" in out
    assert "0.0.0.0 for every interface" in out
    assert "--socket-mode connect to Slack over Socket Mode" in out
    assert "SLACK_SIGNING_SECRET" in out


def test_the_bolt_app_does_not_warn_that_the_token_is_unused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``serve`` has SLACK_BOT_TOKEN in its environment; Bolt read it and warned before."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    control = build_control(database_url="sqlite://")
    settings = SlackSettings(
        bot_token="xoxb-1", signing_secret="s", app_token=None, api_url="http://127.0.0.1:9/api/"
    )
    with caplog.at_level(logging.DEBUG):
        slack = build_app(control, settings)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert slack.client.token == "xoxb-1"
    assert slack.client.base_url == "http://127.0.0.1:9/api/"
    assert slack.bolt.client is slack.client


# --- a taken port ---------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "verb", [["demo", "--no-browser"], ["serve"], ["serve", "--host", "0.0.0.0"]]
)
def test_a_taken_port_is_one_plain_line_and_exit_1(
    tmp_path: Path, taken_port: int, verb: list[str]
) -> None:
    config = tmp_path / "opsgate.yaml"  # approvers set: start-up warns of nothing
    config.write_text(f"runbooks: {REPO / 'runbooks'}\napprovers: [U1, U2, U3]\n")
    env = _env(
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="s",
        OPSGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        OPSGATE_CONFIG=str(config),
    )
    done = _run([*verb, "--port", str(taken_port)], cwd=REPO, env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"port {taken_port} is taken: try --port ")
    suggested = int(lines[0].rsplit(" ", 1)[1])
    assert suggested > taken_port
    assert "Traceback" not in done.stdout
    if verb[0] == "serve":  # nothing started: the database was never created
        assert not (tmp_path / "serve.db").exists()


def test_ctrl_c_stops_serve_while_socket_mode_cannot_reach_slack(tmp_path: Path) -> None:
    """Socket Mode retries its connection forever; SIGINT must still end the process."""
    config = tmp_path / "opsgate.yaml"
    config.write_text(f"runbooks: {REPO / 'runbooks'}\napprovers: [U1]\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = _env(
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_APP_TOKEN="xapp-1",
        OPSGATE_SLACK_API_URL="http://127.0.0.1:9/api/",  # nothing listens: connect fails
        OPSGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        OPSGATE_CONFIG=str(config),
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--socket-mode", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(600):  # up to a minute for start-up on a busy machine
            if b"Failed to connect" in log.read_bytes() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert '"event": "opsgate_stopped"' in log.read_text()
