"""Secrets planted through every path reach the target and nothing else.

A real plan runs through the whole stack (signed Slack requests, the aiohttp app, the control
plane, the guarded http adapter, a fake Slack Web API): its runbook refers to secrets as
``${secret:NAME}`` (from the environment and from a secrets folder) and Vault (a KV v2 field and
a leased database credential, from the Vault stand-in through hvac), the http adapter's config
adds a per-host credential of its own, the target echoes them back
together with secret-shaped strings of every kind, its restart drops the connection (so the
error message carries a URL with a resolved secret), people type credentials into the incident
text and the resolve reason, and a metric label holds one. Then every row of every table,
every call the fake Slack received, every answer to a Slack request, every log line (structlog
and the standard library) and the ``/metrics`` text are searched for each planted value.
Secret values are drawn by hypothesis, so each run plants different ones.
"""

import asyncio
import base64
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlmodel import SQLModel

from adapters.secrets import register_environment_secrets
from adapters.vault_standin import VaultStandIn
from bot import metrics as slack_metrics
from bot.ids import ActionId
from bot.sandbox.webapi import DEFAULT_TOKEN
from common.redaction import forget_secrets
from orchestration.telemetry import configure_logging
from tests.bot.scenario import APPROVER_A, SECRET, Stack
from tests.orchestration.helpers import serve_locally

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _text(size: int, alphabet: str = ALNUM) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=size, max_size=size)


@dataclass(frozen=True)
class Planted:
    """The values a run plants; ``needles`` are what must be found nowhere but at the target."""

    api_key: str
    api_token: str
    db_password: str
    webhook: str
    typed_password: str
    typed_slack: str
    reason_token: str
    echo: dict[str, str]
    label: str
    vault_kv: str
    config_token: str

    def needles(self) -> dict[str, str]:
        """Every planted secret by where it came from."""
        return {
            "secret:vault:checkout/api#key (Vault KV v2, header)": self.vault_kv,
            "secret:CONFIG_TOKEN (config credential header)": self.config_token,
            "secret:API_KEY (env, url query)": self.api_key,
            "secret:API_TOKEN (env, Bearer header)": self.api_token,
            "secret:DB_PASSWORD (env, json body)": self.db_password,
            "secret:WEBHOOK (secrets folder, header)": self.webhook,
            "incident text password=": self.typed_password,
            "incident text xoxb token": self.typed_slack,
            "resolve reason token=": self.reason_token,
            "metrics label": self.label,
            "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            **{f"echoed {kind}": value for kind, value in self.echo.items()},
        }


@st.composite
def planted(draw: st.DrawFn) -> Planted:
    """Fresh secrets of every shape (the echoed ones are what the target answers with)."""
    pem_body = draw(_text(48))
    user_pw = draw(_text(10))
    echo = {
        "slack token": "xoxb-" + draw(_text(10, "0123456789")) + "-" + draw(_text(24)),
        "aws access key": "AKIA" + draw(_text(16, UPPER)),
        "github token": "ghp_" + draw(_text(36)),
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJ" + draw(_text(20)) + "." + draw(_text(24)),
        "pem block": pem_body,
        "password= in text": "pw" + draw(_text(12)),
        "short bearer": "x~" + draw(_text(2)),
        "basic credentials": base64.b64encode(f"ops:{user_pw}".encode()).decode(),
        "url password": "up" + draw(_text(12)),
        "client_secret key": "cs" + draw(_text(16)),
        "cookie header": "ck" + draw(_text(16)),
    }
    return Planted(
        api_key="k" + draw(_text(20)),
        api_token="t" + draw(_text(24)),
        db_password="d" + draw(_text(16)),
        webhook="w" + draw(_text(18)),
        typed_password="p" + draw(_text(14)),
        typed_slack="xoxp-" + draw(_text(12, "0123456789")) + "-" + draw(_text(20)),
        reason_token="r" + draw(_text(14)),
        echo=echo,
        label="xoxb-" + draw(_text(8, "0123456789")) + "-" + draw(_text(16)),
        vault_kv="v" + draw(_text(20)),
        config_token="c" + draw(_text(20)),
    )


RUNBOOK = """
id: leaky-service
version: 1
title: Probe and restart a service that leaks secrets
match:
  keywords: ["leaky"]
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is leaky']
steps:
  - id: probe
    title: Probe {{service}}
    tool: http.get
    args:
      url: "http://127.0.0.1:{port}/svc/{{service}}/health?api_key=${{secret:API_KEY}}"
      headers:
        Authorization: "Bearer ${{secret:API_TOKEN}}"
        X-Hook: "${{secret:WEBHOOK}}"
        X-Kv: "${{secret:vault:checkout/api#key}}"
    risk: low
  - id: restart
    title: Restart {{service}}
    tool: http.post
    args:
      url: "http://127.0.0.1:{port}/svc/{{service}}/restart?token=${{secret:API_KEY}}"
      headers: {{Authorization: "Bearer ${{secret:API_TOKEN}}"}}
      json:
        password: "${{secret:DB_PASSWORD}}"
        note: "restart"
        db_user: "${{secret:vault-lease:database/creds/readonly#username}}"
        db_password: "${{secret:vault-lease:database/creds/readonly#password}}"
    risk: medium
"""


@dataclass
class Target:
    """The service the runbook calls: records what it received, answers with every secret."""

    planted: Planted
    vault: VaultStandIn
    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/svc/{service}/health", self._health)
        app.router.add_post("/svc/{service}/restart", self._restart)
        return app

    async def _record(self, request: web.Request) -> None:
        body = await request.json() if request.can_read_body else None
        self.received.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "hook": request.headers.get("X-Hook"),
                "kv": request.headers.get("X-Kv"),
                "config": request.headers.get("X-Config"),
                "json": body,
            }
        )
        if isinstance(body, dict) and "db_user" in body:  # what the database would say now
            live = self.vault.login_valid(body["db_user"], body["db_password"])
            self.received[-1]["db_login_valid"] = live

    async def _health(self, request: web.Request) -> web.Response:
        await self._record(request)
        echo = self.planted.echo
        leaks = (
            f"debug: token {echo['slack token']} key {echo['aws access key']} "
            f"gh {echo['github token']} jwt {echo['jwt']}\n"
            f"-----BEGIN RSA PRIVATE KEY-----\n{echo['pem block']}\n-----END RSA PRIVATE KEY-----\n"
            f"password={echo['password= in text']} auth Bearer {echo['short bearer']} "
            f"Basic {echo['basic credentials']} db postgresql://ops:{echo['url password']}@db/ops\n"
            f"Cookie: sid={echo['cookie header']}; theme=dark\n"
        )
        return web.json_response(
            {
                "status": "ok",
                "you_sent": self.received[-1],  # the resolved secrets, echoed back
                "config": {"client_secret": echo["client_secret key"], "tokens_used": 42},
                "log": leaks,
            }
        )

    async def _restart(self, request: web.Request) -> web.Response:
        await self._record(request)
        assert request.transport is not None
        request.transport.abort()  # the client sees a dropped connection: a ToolFailed
        return web.Response(status=500)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """The redaction set is process-wide: later tests start without this test's values."""
    yield
    forget_secrets()


@pytest.fixture
def stdlib_logs() -> Iterator[io.StringIO]:
    """Standard-library records of every logger (aiohttp, Bolt), formatted with tracebacks."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    quiet = logging.getLogger("sqlalchemy")
    old_level, old_quiet = root.level, quiet.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet.setLevel(logging.WARNING)  # statements are covered by the table scan below
    yield sink
    root.removeHandler(handler)
    root.setLevel(old_level)
    quiet.setLevel(old_quiet)


def table_rows(db_url: str) -> dict[str, list[str]]:
    """Every row of every table, as JSON text."""
    engine = create_engine(db_url)
    out: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                rows = conn.execute(select(table)).mappings().all()
                out[table.name] = [json.dumps(dict(r), default=str) for r in rows]
    finally:
        engine.dispose()
    return out


def search(needles: dict[str, str], haystacks: dict[str, str]) -> dict[str, list[str]]:
    """Where each needle occurs: ``{needle kind: [exit, ...]}`` (empty when nowhere)."""
    found: dict[str, list[str]] = {}
    for kind, needle in needles.items():
        places = [where for where, text in haystacks.items() if needle in text]
        if places:
            found[kind] = places
    return found


async def run_leaky_incident(
    *, planted: Planted, db_url: str, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], Target, Stack]:
    """Drive the plan and collect every exit's text."""
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "WEBHOOK").write_text(planted.webhook + "\n", encoding="utf-8")
    monkeypatch.setenv("OPSGATE_SECRET_API_KEY", planted.api_key)
    monkeypatch.setenv("OPSGATE_SECRET_API_TOKEN", planted.api_token)
    monkeypatch.setenv("OPSGATE_SECRET_DB_PASSWORD", planted.db_password)
    monkeypatch.setenv("OPSGATE_SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("SLACK_BOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    register_environment_secrets()  # what the composition root does at start-up

    vault = VaultStandIn()
    vault.put_kv("checkout/api", {"key": planted.vault_kv})
    vault.add_db_role("readonly", ttl_s=3600)
    token = vault.add_token("secret/data/checkout/", "database/creds/readonly", "sys/leases/")
    monkeypatch.setenv("OPSGATE_SECRET_VAULT_TOKEN", token)
    monkeypatch.setenv("OPSGATE_SECRET_CONFIG_TOKEN", planted.config_token)
    register_environment_secrets()
    vault_runner, vault_port = await serve_locally(vault.app())
    target = Target(planted, vault)
    runner, port = await serve_locally(target.app())
    answers: dict[str, str] = {}
    http = {
        "rate_per_s": 10000,
        "burst": 10000,
        "credentials": {
            "probe-config": {
                "hosts": ["127.0.0.1"],
                "actions": ["get"],
                "headers": {"X-Config": "${secret:CONFIG_TOKEN}"},
            }
        },
    }
    secrets = {"vault": {"url": f"http://127.0.0.1:{vault_port}", "token": "${secret:VAULT_TOKEN}"}}
    try:
        (tmp / "runbooks").mkdir()
        (tmp / "runbooks" / "leaky.yaml").write_text(RUNBOOK.format(port=port), encoding="utf-8")
        async with Stack(
            db_url=db_url, tmp_path=tmp, adapters={"http": http}, secrets=secrets
        ) as stack:
            status, answers["ack /incident"] = await stack.command(
                f"checkout is leaky, password={planted.typed_password} and "
                f"{planted.typed_slack} in the logs"
            )
            assert status == 200
            await stack.settle()
            card = stack.card("Restart checkout")
            _, answers["ack approve"] = await stack.click(
                card, ActionId.APPROVE.value, user=APPROVER_A
            )
            await stack.settle()
            _, answers["ack resolve"] = await stack.command(
                f"resolve fixed by hand, token={planted.reason_token}"
            )
            await stack.settle()
            slack_metrics.INCIDENTS.labels(source=planted.label).inc()
            assert stack.server is not None
            assert stack.http is not None
            async with stack.http.get(stack.server.make_url("/metrics")) as resp:
                assert resp.status == 200
                answers["/metrics"] = await resp.text()
            slack_calls = {
                f"slack call {i} {call.method}": json.dumps(call.args, default=str)
                for i, call in enumerate(stack.slack.calls)
            }
            texts = stack.texts()
    finally:
        await runner.cleanup()
        await vault_runner.cleanup()
    rows = {f"table {name}": "\n".join(lines) for name, lines in table_rows(stack.db_url).items()}
    assert "Bearer ${secret:API_TOKEN}" in rows["table steps"]  # the store keeps references
    assert "[redacted]" in texts  # the probe's echo reached the thread, redacted
    return {**answers, **slack_calls, **rows}, target, stack


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    phases=[Phase.generate],  # a failing run names its leaks; shrinking one costs minutes
)
@given(plant=planted())
def test_planted_secrets_reach_the_target_and_no_exit(
    plant: Planted,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdlib_logs: io.StringIO,
) -> None:
    """Every planted value is found 0 times in tables, Slack calls, answers, logs, /metrics."""
    configure_logging(json=True)
    with tempfile.TemporaryDirectory() as tmp, monkeypatch.context() as env:
        haystacks, target, _stack = asyncio.run(
            run_leaky_incident(
                planted=plant, db_url=_fresh(db_url, Path(tmp)), tmp=Path(tmp), monkeypatch=env
            )
        )
    haystacks["structlog lines"] = capsys.readouterr().err
    haystacks["stdlib log records"] = stdlib_logs.getvalue()

    # The target got the real values: references are resolved inside the adapter at call time.
    probe, restart = target.received
    assert probe["query"] == {"api_key": plant.api_key}
    assert probe["authorization"] == f"Bearer {plant.api_token}"
    assert probe["hook"] == plant.webhook
    assert restart["query"] == {"token": plant.api_key}
    assert probe["kv"] == plant.vault_kv  # Vault KV v2, read at call time
    assert probe["config"] == plant.config_token  # the adapter's own per-host credential
    db_user, db_password = restart["json"].pop("db_user"), restart["json"].pop("db_password")
    assert restart["json"] == {"password": plant.db_password, "note": "restart"}
    # The dynamic credential was live while the call ran and revoked once it ended (it failed).
    assert restart["db_login_valid"] is True
    vault = target.vault
    assert (vault.issued, vault.renewed, vault.revoked) == (1, 1, 1)
    assert vault.live_leases() == []
    assert not vault.login_valid(db_user, db_password)
    (lease,) = vault.leases.values()
    lease_events = [
        row for row in haystacks["table audit_events"].splitlines() if lease.lease_id in row
    ]
    assert len(lease_events) == 2  # one credential_used per field of the lease
    assert all('"revoked": true' in row for row in lease_events)

    # The paths were taken: the echo was stored, the failure escalated, the incident resolved.
    assert "you_sent" in haystacks["table steps"]
    slack = " ".join(v for k, v in haystacks.items() if k.startswith("slack call"))
    assert "<!here>" in slack
    assert "fixed by hand" in slack

    needles = plant.needles() | {
        "Vault token (OPSGATE_SECRET_VAULT_TOKEN)": next(iter(vault.tokens)),
        "Vault dynamic user name": db_user,
        "Vault dynamic password": db_password,
    }
    found = search(needles, haystacks)
    print(  # the figures the issue asks for (pytest -s)
        f"\nplanted {len(needles)} secrets into {len(haystacks)} exits "
        f"({sum(k.startswith('table ') for k in haystacks)} tables, "
        f"{sum(k.startswith('slack call') for k in haystacks)} Slack calls, logs, /metrics); "
        f"found {sum(len(v) for v in found.values())}",
        file=sys.__stdout__,
    )
    assert found == {}


def _fresh(db_url: str, tmp: Path) -> str:
    """A new database for each hypothesis example (the fixture's one serves the first only)."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp / 'opsgate.db'}"
    return db_url
