"""``python -m bench.open_incidents`` still runs: a real ``opsgate serve`` holds the incidents it
opens, each with its approval card posted, and the JSON reports their memory."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INCIDENTS = 5
COMMAND = ["-m", "bench.open_incidents", "--incidents", str(INCIDENTS), "--no-pg", "--json"]


def test_the_benchmark_holds_every_incident_open_and_reports_its_memory() -> None:
    done = subprocess.run(
        [sys.executable, *COMMAND],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["incidents"] == INCIDENTS
    assert result["target_mb"] == 300
    assert "postgres" not in result
    sqlite = result["sqlite"]
    assert {
        "baseline_rss_mib",
        "rss_mib",
        "peak_rss_mib",
        "open_incidents",
        "pending_approvals",
        "open_s",
        "within",
    } <= set(sqlite)
    assert sqlite["open_incidents"] == INCIDENTS
    assert sqlite["pending_approvals"] == INCIDENTS
    assert sqlite["cards"] == INCIDENTS
    assert 0 < sqlite["baseline_rss_mib"] <= sqlite["peak_rss_mib"]
    assert sqlite["rss_mib"] <= sqlite["peak_rss_mib"]
    assert result["within"] == sqlite["within"]
