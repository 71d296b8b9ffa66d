"""``opsgate check`` refuses a runbook's silence that the Alertmanager allow-list would refuse,
at the refused matcher's line; a ``{param}`` value is left to the call, its label is not; the
demo's monitored runbook passes under the demo's allow-list."""

from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.demo import monitoring
from bot.demo.runner import SERVICE, write_runbooks

CONFIG = """\
runbooks: ./runbooks
approvers: [U1, U2]
adapters:
  alertmanager:
    base_url: http://127.0.0.1:9093
    allow_matchers:
      service: ["checkout-*"]
      alertname: [ServiceErrorRate]
"""

RUNBOOK = """\
id: silence-things
version: 1
title: Silence things
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]{1,40}) is noisy']
steps:
  - id: fine
    title: Silence {service}
    tool: alertmanager.silence
    args:
      matchers:
        - {name: service, value: "{service}"}
        - {name: alertname, value: ServiceErrorRate}
      duration: 15m
      comment: a test
    risk: medium
  - id: outside
    title: Silence by team
    tool: alertmanager.silence
    args:
      matchers:
        - {name: service, value: checkout-api}
        - {name: team, value: "{service}"}
      duration: 15m
      comment: a test
    risk: medium
  - id: value
    title: Silence orders
    tool: alertmanager.silence
    args:
      matchers:
        - {name: service, value: orders-db}
      duration: 15m
      comment: a test
    risk: medium
  - id: regex
    title: Silence by regex
    tool: alertmanager.silence
    args:
      matchers:
        - {name: service, value: "checkout-.*", isRegex: true}
      duration: 15m
      comment: a test
    risk: medium
    compensate:
      tool: alertmanager.expire_silence
      args: {matchers: [{name: service, value: "checkout-.*", isRegex: true}]}
      risk: medium
"""


def test_check_names_each_refused_matcher_at_its_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "opsgate.yaml").write_text(CONFIG)
    (tmp_path / "runbooks" / "silence.yaml").write_text(RUNBOOK)
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "opsgate.yaml", "check"]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    # steps[0] passes: its {service} value is known only when the plan is made.
    assert errors == [
        "error: runbooks/silence.yaml:23: steps[1].args.matchers[1]: alertmanager.silence would "
        "be refused: label 'team' is not in adapters.alertmanager.allow_matchers "
        "(alertname, service)",
        "error: runbooks/silence.yaml:32: steps[2].args.matchers[0]: alertmanager.silence would "
        "be refused: service=\"orders-db\": value not allowed for label 'service' "
        "(allowed: checkout-*)",
        "error: runbooks/silence.yaml:40: steps[3].args.matchers: alertmanager.silence would be "
        'refused: a silence needs at least one name="value" matcher',
        "error: runbooks/silence.yaml:41: steps[3].args.matchers[0]: alertmanager.silence would "
        'be refused: service=~"checkout-.*" is a regex matcher; '
        "adapters.alertmanager.allow_regex is false",
    ]


def test_the_demo_monitored_runbook_passes_under_the_demo_allow_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_runbooks(tmp_path / "runbooks", "http://127.0.0.1:9000", monitored=True)
    config = {
        "runbooks": "./runbooks",
        "approvers": ["U1", "U2"],
        "adapters": {
            "prometheus": {"base_url": "http://127.0.0.1:9090"},
            "alertmanager": {
                "base_url": "http://127.0.0.1:9093",
                "allow_matchers": {"service": [SERVICE], "alertname": [monitoring.ALERT_NAME]},
            },
        },
    }
    (tmp_path / "opsgate.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "opsgate.yaml", "check"]) == 0, capsys.readouterr().out

    config["adapters"]["alertmanager"]["allow_matchers"] = {"alertname": ["*"]}  # type: ignore[index]
    (tmp_path / "opsgate.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", "opsgate.yaml", "check"]) == 1
    out = capsys.readouterr().out
    assert "runbooks/web-restart.yaml:" in out
    assert "label 'service' is not in adapters.alertmanager.allow_matchers (alertname)" in out
