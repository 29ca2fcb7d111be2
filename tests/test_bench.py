"""The benchmark suite runs end to end in its quick form. It asserts what the monitor did
(polls, 304s, events, nothing lost), never how fast: the figures are for people."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_suite_runs_and_writes_its_figures(tmp_path):
    out = tmp_path / "latest.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "steady cycle" in result.stdout and "webhooks" in result.stdout
    figures = json.loads(out.read_text())["figures"]
    assert figures["steady_200"]["not_modified"] == 197 and figures["steady_200"]["events"] == 3
    assert figures["steady_1000"]["not_modified"] == 985 and figures["steady_1000"]["events"] == 15
    assert figures["steady_1000"]["errors"] == 0 and figures["cold_1000"]["errors"] == 0
    assert figures["no_validators"]["not_modified"] == 0
    assert figures["tls_fresh_connections"]["errors"] == 0
    for name in ("webhooks_1", "webhooks_10", "webhooks_10_during_cold_cycle", "bare_webhook_1", "bare_webhook_10"):
        assert figures[name]["per_second"] > 0 and figures[name]["lost"] == 0
    assert figures["naive"]["ratio_vs_steady"] > 1
    for n, changed in ((200, 3), (1000, 15)):  # the daemon, python3 main.py: 1.5 % of the feeds change an interval
        daemon = figures[f"daemon_{n}"]
        assert daemon["unchanged"]["polls"] > 0 and daemon["unchanged"]["not_modified"] == daemon["unchanged"]["polls"]
        assert 0 <= daemon["changed"]["polls"] - daemon["changed"]["not_modified"] <= changed
        assert daemon["events"] == changed  # each changed feed's one new update, announced once
        assert daemon["peak_rss_mb"] > 0 and daemon["unchanged"]["naive_ratio"] > 1
    fleet = figures["postgres_daemon_200_3_replicas"]  # three replicas on one PostgreSQL database
    assert fleet["unchanged"]["polls"] > 0 and fleet["unchanged"]["not_modified"] == fleet["unchanged"]["polls"]
    assert fleet["events"] == 3  # each changed feed's update announced once across the three
    assert fleet["unchanged"]["db_cpu_s_per_1000"] > 0 and fleet["unchanged"]["ratio_vs_sqlite"] > 0
    hooks = figures["postgres_webhooks_10"]
    assert hooks["per_second"] > 0 and hooks["lost"] == 0 and hooks["db_cpu_ms_per_delivery"] > 0
    assert "PostgreSQL, 3 replicas" in result.stdout
