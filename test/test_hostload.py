# SPDX-License-Identifier: Apache-2.0
"""The host-load report (benchmarks, calibration) counts what the run started as its own."""

import subprocess
import sys
import time

import psutil

from dynvit_ros.hostload import _snapshot


def test_a_live_child_process_is_the_benchmarks_own_cpu():
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    burn += "time.sleep(30)"
    start = _snapshot()
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until it has burnt its 0.4 s and sleeps
            if sum(psutil.Process(child.pid).cpu_times()[:2]) >= 0.4:
                break
            time.sleep(0.05)
        end = _snapshot()  # the child still runs: not reaped, not in os.times()
    finally:
        child.kill()
        child.wait()
    own = end[3] - start[3]
    assert own >= 0.4
