"""What the newer adapters answer goes through the one redaction before it is stored or sent.

A SQL answer names its credentials by column (``{"columns": ["name", "password"], "rows":
[...]}``), not by key, and a Kubernetes answer carries tokens in pod logs, labels and event
messages. Each runs as a plan step through the whole control plane (the sql tool on a SQLite
file, the kubernetes tool against the stand-in API server); then every row of every table, every
outbox payload (what reaches Slack) and every log line are searched for the planted values.
The values have no recognisable shape: only the name beside them says they are credentials.
"""

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters import GrantSigner
from adapters.testing.kubernetes import KubeApiStandIn
from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.toolbox import build_registry
from tests.adapters.test_kubernetes import MINT_TOKEN, READ_TOKEN, seed
from tests.orchestration.helpers import REQUESTER, make_config, make_control
from tests.orchestration.test_kubernetes_steps import ACCOUNTS, SA_NS, every_stored_text

ROW_PASSWORD = "Zq7hunter2"
ROW_TOKEN = "Zq7plain-api-token"
LOG_PASSWORD = "Zq7logpass"
LOG_BEARER = "Zq7bearer.value"
LABEL_TOKEN = "Zq7label"
EVENT_TOKEN = "Zq7event"

SQL_RUNBOOK = """
id: accounts-check
version: 1
title: Look at the accounts table
match:
  patterns: ['accounts look wrong']
steps:
  - id: read
    title: Read the accounts
    tool: sql.query
    args: {database: shop, query: "SELECT name, password, api_token, logins FROM accounts"}
    risk: low
"""

K8S_RUNBOOK = """
id: k8s-look
version: 1
title: Look at a pod
match:
  patterns: ['web pod looks wrong']
steps:
  - id: logs
    title: Read the pod's log
    tool: kubernetes.logs
    args: {namespace: shop, pod: web-0}
    risk: low
  - id: pods
    title: List the pods
    tool: kubernetes.get
    args: {namespace: shop, kind: pods}
    risk: low
  - id: events
    title: List the events
    tool: kubernetes.get
    args: {namespace: shop, kind: events}
    risk: low
"""


async def stored_and_sent(cp: ControlPlane, logs: list[dict[str, Any]]) -> dict[str, str]:
    """Every exit as text: the database (outbox payloads included) and the log lines."""
    return {
        "database": await every_stored_text(cp),
        "logs": json.dumps(logs, default=str),
    }


async def test_a_sql_row_with_password_and_token_columns_is_redacted_at_every_exit(
    db_url: str, tmp_path: Path, planes: list[ControlPlane], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE accounts (name text, password text, api_token text, logins int)")
        conn.execute("INSERT INTO accounts VALUES ('alice', ?, ?, 3)", (ROW_PASSWORD, ROW_TOKEN))
    monkeypatch.setenv("OPSGATE_SECRET_SHOP_DSN", f"sqlite:///{shop}")
    folder = tmp_path / "rb"
    folder.mkdir()
    (folder / "accounts.yaml").write_text(SQL_RUNBOOK, encoding="utf-8")
    config = make_config(
        folder, adapters={"sql": {"databases": {"shop": {"dsn": "${secret:SHOP_DSN}"}}}}
    )
    cp = await make_control(db_url, config, FakeClock())
    planes.append(cp)
    with capture_logs() as logs:
        opened = await cp.open_incident(text="accounts look wrong", requester=REQUESTER)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    exits = await stored_and_sent(cp, logs)
    assert "alice" in exits["database"]  # the answer was stored, its credentials were not
    for where, text in exits.items():
        for planted in (ROW_PASSWORD, ROW_TOKEN):
            assert planted not in text, (where, planted)


async def test_a_kubernetes_answer_carrying_tokens_is_redacted_at_every_exit(
    db_url: str, tmp_path: Path, planes: list[ControlPlane], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setenv("OPSGATE_SECRET_K8S_READ", READ_TOKEN)
    monkeypatch.setenv("OPSGATE_SECRET_K8S_MINT", MINT_TOKEN)
    async with KubeApiStandIn(clock=clock) as api:
        seed(api)
        api.add_pod(
            "shop",
            "web-0",
            labels={"app": "web", "api_token": LABEL_TOKEN},
            log=(
                "starting web\n"
                f"connecting to postgres with password={LOG_PASSWORD}\n"
                f"calling billing: Authorization: Bearer {LOG_BEARER}\n"
            ),
            phase="Running",
        )
        api.add_event("shop", involved="web-0", reason="Failed", message=f"token: {EVENT_TOKEN}")
        folder = tmp_path / "rb"
        folder.mkdir()
        (folder / "k8s.yaml").write_text(K8S_RUNBOOK, encoding="utf-8")
        kube: dict[str, Any] = {
            "server": api.url,
            "namespaces": ["shop"],
            "read_token": "${secret:K8S_READ}",
            "minting_token": "${secret:K8S_MINT}",
            "service_account_namespace": SA_NS,
            "service_accounts": ACCOUNTS,
            "rate_per_s": 1000,
            "burst": 1000,
        }
        config = make_config(folder, adapters={"kubernetes": kube})
        signer = GrantSigner(b"s" * 32)
        tools = build_registry(config, signer=signer, clock=clock)
        cp = await make_control(db_url, config, clock, tools=tools, signer=signer)
        planes.append(cp)
        with capture_logs() as logs:
            opened = await cp.open_incident(text="web pod looks wrong", requester=REQUESTER)
        view = await cp.plan_view(opened.plan_id)
        assert view.status == "succeeded", view.status_reason
        exits = await stored_and_sent(cp, logs)
    assert "starting web" in exits["database"]  # the log was stored, its credentials were not
    for where, text in exits.items():
        for planted in (LOG_PASSWORD, LOG_BEARER, LABEL_TOKEN, EVENT_TOKEN, READ_TOKEN):
            assert planted not in text, (where, planted)
