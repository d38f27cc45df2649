# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: a tiny random-weight SegFormer-B0 checkpoint and the ROS test harness.

Run with the `pytest` console script after `source tools/env.sh` (or via
`make test`): the installed dynvit_ros (with its generated msg module) is then
the one imported. Without an install space the source tree is used, and the
tests that need ROS nodes skip, unless DYNVIT_REQUIRE_ROS=1 (set by `make
test`) turns that skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ros_harness
if importlib.util.find_spec("dynvit_ros") is None:
    sys.path.append(str(REPO))
import dynvit_ros  # noqa: E402

# `python -m pytest` puts the source tree first, whose dynvit_ros has no
# generated msg module: take that from the install space (same sources).
_INSTALLED = sorted(
    (REPO / "install" / "dynvit_ros" / "lib").glob("python3*/site-packages/dynvit_ros")
)
if _INSTALLED and importlib.util.find_spec("dynvit_ros.msg") is None:
    dynvit_ros.__path__.append(str(_INSTALLED[0]))

# Tests talk to nodes on this machine only.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import ros_harness  # noqa: E402
from ros_harness import INPUT_HW, PALETTE  # noqa: E402

NUM_CLASSES = len(PALETTE)


def pytest_report_header(config):
    has_msg = importlib.util.find_spec("dynvit_ros.msg") is not None
    return (
        f"dynvit_ros from {list(dynvit_ros.__path__)} (msg module: {'yes' if has_msg else 'no'})"
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> dict:
    """A SegFormer-B0 with random weights at 120x160 and a three-level skip table."""
    import torch

    from dynvit_ros.engine.checkpoint import ModelMetadata, save_checkpoint
    from dynvit_ros.engine.levels import LevelTable
    from dynvit_ros.engine.model import VARIANTS, build_segformer
    from dynvit_ros.engine.skip import FULL, SkipConfig

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = build_segformer("b0", NUM_CLASSES)
    meta = ModelMetadata(
        variant="b0",
        num_classes=NUM_CLASSES,
        class_names=["void", "road", "tree", "sky", "car"],
        palette=PALETTE,
        input_size=list(INPUT_HW),
    )
    checkpoint = save_checkpoint(folder / "tiny_b0.safetensors", model, meta)
    depths = VARIANTS["b0"].depths
    last = [(s, depths[s] - 1) for s in range(4)]
    levels = LevelTable.from_configs(
        [
            FULL,
            SkipConfig(name="attn-last", skip_attention=last),
            SkipConfig(
                name="block-last+fuse8+s0.5", skip_block=[(3, 1)], fuse_stride=8, input_scale=0.5
            ),
        ]
    ).save(folder / "tiny_b0.levels.yaml")
    return {"model_path": str(checkpoint), "levels_path": str(levels), "dir": folder}


@pytest.fixture
def segmenter_params(tiny_model, monkeypatch, tmp_path):
    """segformer_node's parameters for the tiny model (latency cache under tmp_path, one
    quick calibration round), with ``overrides``."""
    from dynvit_ros.ros.segmenter import PARAMETERS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def make(**overrides) -> dict:
        params = {name: spec.default for name, spec in PARAMETERS.items()}
        params.update(
            model_path=tiny_model["model_path"],
            levels_path=tiny_model["levels_path"],
            tune_allocator=False,
            latency_options="{warmup: 1, repeats: 1, progress: false}",
        )
        params.update(overrides)
        return params

    return make


@pytest.fixture
def ros(tmp_path, request):
    """Per test: a fresh ROS_DOMAIN_ID, a client node, and a launcher for installed nodes.

    Yields an object with .client (ros_harness.RosClient), .start(exe, name, params,
    remaps) -> NodeProcess, and .domain_id. Node logs are printed when the test fails.
    """
    reason = ros_harness.missing_install_reason()
    if reason:
        if os.environ.get("DYNVIT_REQUIRE_ROS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)

    class _Ros:
        domain_id = ros_harness.next_domain_id()
        processes: list = []

        def start(self, exe, name, params, remaps=None):
            proc = ros_harness.start_node(exe, name, params, self.domain_id, tmp_path, remaps)
            self.processes.append(proc)
            return proc

    env = _Ros()
    env.processes = []
    env.client = ros_harness.RosClient(env.domain_id)
    yield env
    env.client.close()
    for proc in env.processes:
        rc = proc.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(
                f"\n----- {proc.name} (exit {rc}): {' '.join(proc.cmd)}\n{proc.output()[-6000:]}"
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
