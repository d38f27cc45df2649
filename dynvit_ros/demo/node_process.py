# SPDX-License-Identifier: Apache-2.0
"""Start installed nodes the way launch_ros does, for the demo, benchmarks and tests.

``<prefix>/lib/dynvit_ros/<exe> --ros-args --params-file <yaml> -r __node:=<name> -r ...``
in a process of its own (``launch`` is not available from PyPI; real robot
stacks use ``launch/dynvit.launch.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys

import yaml

from dynvit_ros.share import PACKAGE, SOURCE_ROOT


def install_prefix() -> Path:
    """The colcon install prefix of this package, from AMENT_PREFIX_PATH or the repo's install/."""
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / "lib" / PACKAGE).is_dir():
            return Path(entry)
    return SOURCE_ROOT / "install" / PACKAGE


def executable(name: str) -> Path:
    return install_prefix() / "lib" / PACKAGE / name


class NodeProcess:
    def __init__(
        self,
        exe: str,
        name: str,
        params: dict,
        domain_id: int,
        workdir: Path,
        remaps: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        # Absolute: the process runs in workdir, so a relative path would not resolve there.
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.params_file = workdir / f"{name}.params.yaml"
        self.params_file.write_text(yaml.safe_dump({f"/**/{name}": {"ros__parameters": params}}))
        self.log_path = workdir / f"{name}.log"
        path = executable(exe)
        cmd = (
            [str(path)] if os.access(path, os.X_OK) else [sys.executable, "-m", f"{PACKAGE}.{exe}"]
        )
        cmd += ["--ros-args", "--params-file", str(self.params_file), "-r", f"__node:={name}"]
        for src, dst in (remaps or {}).items():
            cmd += ["-r", f"{src}:={dst}"]
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(domain_id),
            PYTHONUNBUFFERED="1",
            RCUTILS_LOGGING_BUFFERED_STREAM="0",
            RCUTILS_COLORIZED_OUTPUT="0",
        )
        self._log = open(self.log_path, "wb")
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or workdir,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT like launch does, then SIGKILL; returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
