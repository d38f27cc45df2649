# SPDX-License-Identifier: Apache-2.0
"""The robustness campaign's quick run (benchmarks/bench_robustness.py --quick) over real DDS."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
from ros_harness import missing_install_reason

REPO = Path(__file__).resolve().parents[1]


def test_quick_campaign_meets_the_targets():
    reason = missing_install_reason()
    if reason:
        if os.environ.get("DYNVIT_REQUIRE_ROS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_robustness.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["crashes"] == 0 and r["processing_errors"] == 0 and r["uncounted"] == 0, r
    assert r["bomb_refused"] and r["peak_rss_mb"] < 1536, r
    assert r["hostile_budgets_accepted_wrongly"] == 0, r
    assert r["parameters_changed_by_refusals"] == [] and r["refusals_without_reason"] == 0, r
    assert r["malicious_code_ran"] is False and r["bad_models_refused"] == "4/4", r
    assert r["truncated_bag_exit"] == 2, r
    assert r["exit_codes"] == [0, 0] and r["shutdown_error_lines"] == 0, r
    assert r["soak_unaccounted"] == 0, r
    assert r["fallback_s"] is not None and r["fallback_s"] <= 2.0 + 0.5, r  # timeout + 0.5 s
    assert r["max_log_line"] < 1000, r
