"""Recovery playbooks at the surface: ``opsgate check`` reports each problem with file and line
(exit 1); the demo writes its playbooks next to its runbooks."""

from pathlib import Path

import pytest

from bot.cli import main
from bot.demo.runner import write_runbooks
from orchestration.recovery import load_playbooks

REPO = Path(__file__).resolve().parents[2]


def test_check_lists_the_playbooks_and_reports_a_broken_one_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbooks = tmp_path / "runbooks"
    (runbooks / "recovery").mkdir(parents=True)
    (runbooks / "web.yaml").write_text((REPO / "runbooks" / "web-restart.yaml").read_text())
    (runbooks / "recovery" / "ok.yaml").write_text(
        "id: ok\nversion: 1\ntitle: OK\nfailure_mode: in_doubt\nmanual: ['Check {service}.']\n"
    )
    config = tmp_path / "opsgate.yaml"
    config.write_text("runbooks: ./runbooks\n")
    assert main(["--config", str(config), "check"]) == 0
    assert "playbooks: 1 in" in capsys.readouterr().out

    bad = runbooks / "recovery" / "bad.yaml"
    bad.write_text(
        "id: bad\nversion: 1\ntitle: Bad\nfailure_mode: tool_flaky\n"
        "steps:\n  - {id: a, title: 'Probe {servce}', tool: http.get, args: {}, risk: low}\n"
    )
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:6: steps[0].title: {{servce}} is not a fact of the failure" in out
    assert f"{bad}:6: steps[0].args.url: http.get needs the argument 'url'; add it" in out
    assert "2 problem(s) found." in out


def test_the_demo_writes_its_playbooks_pointed_at_its_service(tmp_path: Path) -> None:
    write_runbooks(tmp_path, "http://127.0.0.1:4242")
    loaded = load_playbooks(tmp_path / "recovery", params={"service"})
    assert loaded.problems == []
    assert len(loaded.playbooks) == 6
    probe = loaded.playbooks["http-flaky"].steps[0]
    assert probe.args["url"].startswith("http://127.0.0.1:4242/")
