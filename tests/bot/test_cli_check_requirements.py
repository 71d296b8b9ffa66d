"""``opsgate check`` against the pack's ``require`` rules: a runbook step that lacks the canary or
dry run a rule asks for is a problem at the step's file and line; a canary on a read-only action
is one too."""

from pathlib import Path

import pytest

from bot.cli import main

CONFIG = """\
runbooks: ./runbooks
policies: ./pack.yaml
approvers: [U1]
adapters:
  kubernetes:
    server: https://kube.internal:6443
    namespaces: [shop-prod, shop-canary, shop-staging]
    read_token: "${secret:K8S_READ}"
    minting_token: "${secret:K8S_MINT}"
    service_accounts:
      rollout_restart: opsgate-restarter
      scale: opsgate-scaler
      rollout_undo: opsgate-undoer
"""

PACK = """\
version: 1
require:
  - id: prod-restart-canary
    tool: "kubernetes.rollout_restart"
    args_pattern: '"namespace":"[a-z-]*prod"'
    canary: true
    reason: "Production restarts are tried on the canary first."
"""

RUNBOOK = """\
id: k8s-restart
version: 1
title: Restart a deployment
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]{1,40}) is down']
steps:
  - id: look
    title: Look at {service}
    tool: kubernetes.get
    args: {namespace: shop-prod, kind: deployments, name: "{service}"}
    risk: low
  - id: restart
    title: Restart {service}
    tool: kubernetes.rollout_restart
    args: {namespace: shop-prod, name: "{service}"}
    risk: high
"""

CANARY = """\
    canary:
      args: {namespace: shop-canary, name: "{service}"}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSGATE_SECRET_K8S_READ", "reader-token-value-1234")
    monkeypatch.setenv("OPSGATE_SECRET_K8S_MINT", "minter-token-value-1234")
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    path = tmp_path / "opsgate.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_a_step_without_the_canary_a_rule_requires_is_named_at_its_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = config.parent / "runbooks" / "k8s.yaml"
    runbook.write_text(RUNBOOK, encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    line = RUNBOOK.splitlines().index("  - id: restart") + 1
    assert (
        f"{runbook}:{line}: steps[1]: steps[1] (restart) needs a canary by policy rule "
        "prod-restart-canary (Production restarts are tried on the canary first.); "
        "add canary: {args: {...}} naming where it cannot hurt"
    ) in out
    assert "steps[0]" not in out  # the read is outside the rule
    assert "token-value" not in out

    runbook.write_text(RUNBOOK + CANARY, encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 0, capsys.readouterr().out


def test_a_rule_that_matches_no_step_reports_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same step in a namespace the pattern does not name passes."""
    runbook = config.parent / "runbooks" / "k8s.yaml"
    runbook.write_text(RUNBOOK.replace("shop-prod", "shop-staging"), encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 0, capsys.readouterr().out


def test_a_dry_run_rule_is_met_by_an_action_that_previews(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dry_run: true holds for kubernetes writes (they preview); an http post cannot."""
    (config.parent / "pack.yaml").write_text(
        "version: 1\nrequire:\n"
        '  - {id: writes-dry-run, tool: "*", read_only: false, dry_run: true,'
        ' reason: "Writes are dry-run first."}\n',
        encoding="utf-8",
    )
    runbook = config.parent / "runbooks" / "k8s.yaml"
    runbook.write_text(RUNBOOK, encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 0, capsys.readouterr().out
    post = RUNBOOK + (
        "  - id: tell\n    title: Tell the status page\n    tool: http.post\n"
        '    args: {url: "http://127.0.0.1:9000/status"}\n    risk: medium\n'
    )
    runbook.write_text(post, encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    line = post.splitlines().index("  - id: tell") + 1
    assert (
        f"{runbook}:{line}: steps[2]: steps[2] (tell) needs a dry run by policy rule "
        "writes-dry-run (Writes are dry-run first.); http.post cannot be tried with a dry run; "
        "use an action that can"
    ) in out


def test_a_canary_on_a_read_only_action_is_a_problem(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = config.parent / "runbooks" / "k8s.yaml"
    text = RUNBOOK.replace(
        "    risk: low\n",
        '    risk: low\n    canary:\n      args: {namespace: shop-canary, name: "{service}"}\n',
        1,
    )
    runbook.write_text(text + CANARY, encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "kubernetes.get is read-only: there is nothing for a canary to try first" in out


def test_min_risk_is_compared_with_the_risk_the_pack_escalates_to(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A medium step that an escalation rule raises to high meets a min_risk: high rule."""
    (config.parent / "pack.yaml").write_text(
        "version: 1\nescalate:\n"
        '  - {id: prod, tool: "kubernetes.*", args_pattern: "prod", to: high, reason: "Prod."}\n'
        "require:\n"
        '  - {id: high-canary, tool: "kubernetes.scale", min_risk: high, canary: true,'
        ' reason: "High-risk scaling is tried on the canary first."}\n',
        encoding="utf-8",
    )
    runbook = config.parent / "runbooks" / "k8s.yaml"
    scale = RUNBOOK + (
        "  - id: shrink\n    title: Scale {service} down\n    tool: kubernetes.scale\n"
        '    args: {namespace: NS, name: "{service}", replicas: 1}\n    risk: medium\n'
    )
    runbook.write_text(scale.replace("NS", "shop-staging"), encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 0, capsys.readouterr().out
    runbook.write_text(scale.replace("NS", "shop-prod"), encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    line = scale.splitlines().index("  - id: shrink") + 1
    assert f"{runbook}:{line}: steps[2]: steps[2] (shrink) needs a canary by policy rule " in (
        capsys.readouterr().out
    )
