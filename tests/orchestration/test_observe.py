"""A probe's ``healthy``/``end_if``: validated with lines, observed (never a failure), and a
healthy answer ends the plan with nothing to do instead of proposing a restart."""

from pathlib import Path

import pytest

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.runbooks import load_folder, load_runbook
from orchestration.views import Opened
from tests.orchestration.helpers import DemoService, make_config, make_control
from tests.orchestration.test_runbooks import SHIPPED, line_of, only_problem, write

PROBE = """\
id: web-restart
version: 1
title: Restart an unhealthy web service
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]+) is down']
steps:
  - id: probe
    title: Probe {service}
    tool: http.get
    args: {url: "http://127.0.0.1/svc/{service}/health"}
    risk: low
    healthy: {status: 200}
    end_if: healthy
  - id: restart
    title: Restart {service}
    tool: http.post
    args: {url: "http://127.0.0.1/svc/{service}/restart"}
    risk: high
"""


def test_a_probe_with_healthy_and_end_if_loads(tmp_path: Path) -> None:
    runbook, problems = load_runbook(write(tmp_path, PROBE))
    assert problems == []
    assert runbook is not None
    assert (runbook.steps[0].healthy, runbook.steps[0].end_if) == ({"status": 200}, "healthy")


def test_end_if_without_healthy_is_reported_on_the_end_if_line(tmp_path: Path) -> None:
    text = PROBE.replace("    healthy: {status: 200}\n", "")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "end_if: healthy")
    assert problem.where == "steps[0].end_if"
    assert "no healthy expectation" in problem.message


def test_end_if_on_the_last_step_is_reported_on_its_line(tmp_path: Path) -> None:
    text = PROBE + "    healthy: {status: 200}\n    end_if: unhealthy\n"
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "end_if: unhealthy")
    assert "last step" in problem.message


def test_an_unknown_end_if_value_is_reported_on_its_line(tmp_path: Path) -> None:
    text = PROBE.replace("end_if: healthy", "end_if: sunny")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "end_if: sunny")
    assert problem.where == "steps[0].end_if"


def test_an_unknown_healthy_key_is_reported_on_its_line(tmp_path: Path) -> None:
    text = PROBE.replace("healthy: {status: 200}", "healthy:\n      statuz: 200")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "statuz")
    assert "unknown expect key 'statuz'" in problem.message


def test_an_empty_healthy_is_reported_on_its_line(tmp_path: Path) -> None:
    text = PROBE.replace("healthy: {status: 200}", "healthy: {}")
    problem = only_problem(write(tmp_path, text))
    assert problem.line == line_of(text, "healthy: {}")


@pytest.mark.parametrize("folder", [SHIPPED, SHIPPED.parent / "bot" / "demo" / "runbooks"])
def test_shipped_probes_end_the_plan_when_the_service_is_healthy(folder: Path) -> None:
    runbooks, problems = load_folder(folder)
    assert problems == []
    for runbook_id in ("web-restart", "cache-flush"):
        first = runbooks[runbook_id].steps[0]
        assert first.end_if == "healthy", runbook_id
        assert first.healthy, runbook_id


async def _open(
    db_url: str, tmp_path: Path, *, healthy: bool
) -> tuple[ControlPlane, Opened, DemoService]:
    service = await DemoService(healthy=healthy).start()
    (tmp_path / "runbooks").mkdir()
    text = PROBE.replace("http://127.0.0.1/", f"http://127.0.0.1:{service.port}/")
    write(tmp_path / "runbooks", text, name="web-restart.yaml")
    control = await make_control(db_url, make_config(tmp_path / "runbooks"), FakeClock())
    opened = await control.open_incident(
        text="checkout-api is down", requester="UREQ", channel="C1"
    )
    return control, opened, service


async def test_a_healthy_answer_ends_the_plan_with_nothing_to_do(
    db_url: str, tmp_path: Path
) -> None:
    control, opened, service = await _open(db_url, tmp_path, healthy=True)
    try:
        view = await control.plan_view(opened.plan_id)
        assert view.status == "succeeded"
        assert view.status_reason.startswith(
            "The service is healthy ('Probe checkout-api' answered 200)"
        )
        probe, restart = view.steps
        assert probe.status == "succeeded"
        assert probe.observe is not None
        assert (probe.observe["seen"], probe.observe["status"]) == ("healthy", 200)
        assert restart.status == "skipped"
        assert service.restarts == 0
        trail = await control.audit_trail(opened.plan_id)
        assert "approval_requested" not in [e.event for e in trail]
        assert [e.code for e in trail if e.event == "plan_finished"] == ["nothing_to_do"]
    finally:
        await control.close()
        await service.stop()


async def test_an_unhealthy_answer_is_observed_and_the_plan_goes_on(
    db_url: str, tmp_path: Path
) -> None:
    control, opened, service = await _open(db_url, tmp_path, healthy=False)
    try:
        view = await control.plan_view(opened.plan_id)
        probe, restart = view.steps
        assert probe.status == "succeeded"  # the call worked: a 503 is an observation
        assert probe.observe is not None
        assert probe.observe["seen"] == "unhealthy"
        assert probe.observe["why"] == "expected status 200, got 503"
        assert restart.status == "awaiting_approval"
        assert view.status == "waiting"
    finally:
        await control.close()
        await service.stop()
