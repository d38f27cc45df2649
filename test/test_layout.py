# SPDX-License-Identifier: Apache-2.0
"""The architecture holds: the core imports no ROS, lint passes, every file names its licence."""

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
SPDX = "SPDX-License-Identifier: Apache-2.0"


def test_core_packages_import_without_rclpy():
    code = (
        "import sys, dynvit_ros.engine.runtime, dynvit_ros.engine.levels, "
        "dynvit_ros.latency.profiled, dynvit_ros.latency.accelerator, "
        "dynvit_ros.budget.controller, dynvit_ros.budget.system_load, dynvit_ros.host\n"
        "assert 'rclpy' not in sys.modules, 'rclpy imported by the core'\n"
        "assert not any(m.startswith('dynvit_ros.training') or m.startswith('dynvit_ros.demo') "
        "for m in sys.modules), 'core imports training/demo tooling'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_runtime_layers_do_not_import_training_or_demo():
    for layer in ("engine", "latency", "budget", "ros", "bags"):
        for path in (REPO / "dynvit_ros" / layer).glob("*.py"):
            text = path.read_text()
            assert "dynvit_ros.training" not in text and "dynvit_ros.demo" not in text, path


def _sources():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in tracked + untracked:
        path = REPO / name
        if path.exists() and (
            path.suffix in (".py", ".sh")
            or name.startswith(("scripts/", ".ci/"))
            or name in ("CMakeLists.txt", "Makefile")
        ):
            yield path


def test_every_source_file_has_an_spdx_line():
    missing = [
        str(p.relative_to(REPO))
        for p in _sources()
        if SPDX not in "".join(p.read_text().splitlines(True)[:3])
    ]
    assert not missing, f"no '{SPDX}' in the first lines of: {missing}"


def test_lint():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (tools/requirements.txt installs it)")
    check = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [ruff, "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
