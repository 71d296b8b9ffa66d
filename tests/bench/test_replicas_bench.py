"""``python -m bench.replicas`` still runs: one and two real ``opsgate serve`` replicas on one
PostgreSQL finish every incident it drives, each restart exactly once, and it reports the
throughput ratio and the CPU per incident."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _pg_available, pg_url

REPO = Path(__file__).resolve().parents[2]
INCIDENTS = 6

pytestmark = pytest.mark.postgres


def test_one_and_two_replicas_finish_every_incident_once_and_report_their_cost() -> None:
    url = pg_url()
    missing = _pg_available(url)
    if missing:
        pytest.skip(f"PostgreSQL is not reachable: {missing}")
    command = [
        *("-m", "bench.replicas", "--incidents", str(INCIDENTS), "--warmup", "1"),
        *("--rounds", "1", "--delay-ms", "20", "--slots", "2", "--inflight", "6"),
        *("--pg", url, "--json"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSGATE_", "SLACK_"))}
    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["slots"] == 2
    assert result["throughput_ratio"] > 0
    assert result["server_cpu_ms_per_incident"] > 0
    for count in ("1", "2"):
        (run,) = result["runs"][count]
        assert run["replicas"] == int(count)
        assert run["incidents"] == INCIDENTS
        assert run["double_restarts"] == 0
        assert run["missed_restarts"] == 0
        assert run["commits_per_incident"] > 0
        assert run["slack_calls_per_incident"]["chat.postMessage"] >= 5  # root, card, results
