# SPDX-License-Identifier: Apache-2.0
"""The one-command demo: replay a street bag through the dynamic SegFormer under a CPU load burst.

    make demo                 # or: python -m dynvit_ros.demo.demo --out outputs/demo [--camvid]

It starts segformer_node and load_monitor_node as launch would, replays the
bundled street bag (60 real CamVid val frames, ``data/camvid_street``; the
procedurally drawn one with ``--synthetic``; every CamVid val frame from
../shared with ``--camvid``), starts a busy process on every core for a while so that the
load monitor cuts the budget, records the node's outputs into a bag, and
writes plots, a few mask overlays and a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np

from dynvit_ros.bags.io import read_messages
from dynvit_ros.demo.node_process import NodeProcess, executable
from dynvit_ros.demo.run_report import plot_timeline, read_masks, read_timeline, save_overlays
from dynvit_ros.ros.stamps import to_ns
from dynvit_ros.share import SOURCE_ROOT

REPO = SOURCE_ROOT
REAL_BAG = REPO / "data" / "camvid_street" / "bag"  # 60 CamVid val frames, CC BY-NC 4.0
SYNTHETIC_BAG = REPO / "data" / "sample_street"
DEFAULT_MODEL = REPO / "models" / "segformer_b0_camvid.safetensors"
DEFAULT_LEVELS = REPO / "config" / "segformer_b0_camvid.levels.yaml"
IMAGE_TOPIC = "/camera/image_raw/compressed"


def _spin(until: float) -> None:
    x = 0
    while time.time() < until:
        x += 1


def cpu_burst(seconds: float, workers: int | None = None) -> list[mp.Process]:
    """``workers`` busy processes (default: every core) for ``seconds``; they end by themselves.

    Spawned, not forked: forking a process whose DDS threads are running can
    deadlock the child.
    """
    until = time.time() + seconds
    spawn = mp.get_context("spawn")
    procs = [
        spawn.Process(target=_spin, args=(until,), daemon=True)
        for _ in range(workers or os.cpu_count() or 2)
    ]
    for p in procs:
        p.start()
    return procs


def decode_frames(bag: Path) -> dict[int, np.ndarray]:
    import cv2

    from dynvit_ros.bags.io import typestore

    store = typestore()
    frames = {}
    for msg in read_messages(bag, [IMAGE_TOPIC]):
        m = store.deserialize_cdr(msg.data, msg.msgtype)
        bgr = cv2.imdecode(np.asarray(m.data, np.uint8), cv2.IMREAD_COLOR)
        frames[to_ns(m.header.stamp)] = bgr[:, :, ::-1]
    return frames


def wait_ready(domain_id: int, timeout: float) -> bool:
    """True once segformer_node subscribes to the image topic (it does so after loading the
    model).
    """
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("demo_probe", context=context)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.get_subscriptions_info_by_topic(IMAGE_TOPIC):
                return True
            time.sleep(0.2)
        return False
    finally:
        node.destroy_node()
        context.try_shutdown()


def phase_rows(tl, spans) -> list[tuple[str, np.ndarray]]:
    if not spans:
        return [("whole run", np.ones(tl.frames, bool))]
    start, end, _ = spans[0]
    return [
        ("before burst", tl.t < start),
        ("during burst", (tl.t >= start) & (tl.t < end)),
        ("after burst", tl.t >= end),
        ("whole run", np.ones(tl.frames, bool)),
    ]


def write_summary(out: Path, tl, spans, plots, overlays, args, levels) -> Path:
    lines = [
        "# dynvit_ros demo",
        "",
        f"Command: `python -m dynvit_ros.demo.demo {' '.join(args.argv)}`  ",
        f"Input: `{args.source}` at {args.rate:g}x, {args.duration:g} s; CPU burst of "
        f"{args.burst_workers} busy process(es) on {os.cpu_count()} cores from about "
        f"{args.burst[0]:g} s "
        f"to {args.burst[1]:g} s (load monitor in the loop).  ",
        f"Model: `{args.model}`, {len(levels)} skip levels, latency model `{args.latency_model}`.",
        "",
        "| phase | frames | mean level | deadline misses | mean budget ms | mean measured ms "
        "| dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, mask in phase_rows(tl, spans):
        if mask.any():
            lines.append(
                f"| {name} | {int(mask.sum())} | {tl.level[mask].mean():.2f} | "
                f"{tl.miss_pct(mask):.1f}% | "
                f"{tl.budget_ms[mask].mean():.1f} | {tl.measured_ms[mask].mean():.1f} | "
                f"{int(tl.dropped[mask].sum())} |"
            )
    lines += [
        "",
        "Skip levels:",
        "",
        "| level | config | CamVid val mIoU | profiled ms (table) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {lv.level} | {lv.name} | {lv.accuracy} | {lv.latency_ms} |" for lv in levels]
    lines += [
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
        *[f"![{p.stem}]({p.name})" for p in overlays],
        "",
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "demo")
    p.add_argument("--bag", type=Path, default=REAL_BAG)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--camvid", action="store_true", help="replay CamVid val frames instead (needs ../shared)"
    )
    source.add_argument(
        "--synthetic",
        action="store_true",
        help=f"replay the procedurally drawn street ({SYNTHETIC_BAG.relative_to(REPO)})",
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--levels", type=Path, default=DEFAULT_LEVELS)
    p.add_argument("--latency-model", default="profiled")
    p.add_argument("--rate", type=float, default=1.0, help="replay time factor")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--burst", type=float, nargs=2, default=[20.0, 40.0], metavar=("START", "END"))
    p.add_argument(
        "--burst-workers",
        type=int,
        default=os.cpu_count() or 2,
        help="busy processes during the burst (default: one per core; with half the cores "
        "busy the full model still keeps up at 10 Hz on two cores, and nothing moves)",
    )
    p.add_argument(
        "--camera-hz", type=float, default=10.0, help="target rate the load monitor budgets for"
    )
    p.add_argument(
        "--domain-id", type=int, default=0, help="ROS_DOMAIN_ID (0 = pick one from the PID)"
    )
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)

    out = args.out.resolve()
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    domain = args.domain_id or 100 + os.getpid() % 100
    if args.camvid:
        from dynvit_ros.demo.camvid_sample import val_bag

        bag = val_bag(out / "camvid_input", rate_hz=args.camera_hz, topic=IMAGE_TOPIC)
    else:
        bag = SYNTHETIC_BAG if args.synthetic else args.bag
    args.source = "CamVid val" if args.camvid else str(bag)
    from dynvit_ros.engine.levels import LevelTable

    levels = LevelTable.load(args.levels)

    started = time.monotonic()
    seg = NodeProcess(
        "segformer_node",
        "segformer_node",
        {
            "model_path": str(args.model.resolve()),
            "levels_path": str(args.levels.resolve()),
            "input_type": "compressed",
            "latency_model": args.latency_model,
            "latency_options": json.dumps(
                {"cache_dir": str((REPO / "outputs" / "cache").resolve())}
            ),
            "mode": "auto",
            "default_budget_ms": 1000.0 / args.camera_hz,
            "budget_timeout_s": 2.0,
            "publish_color": False,
        },
        domain,
        out / "logs",
        remaps={"image": IMAGE_TOPIC},
    )
    monitor = NodeProcess(
        "load_monitor_node",
        "load_monitor_node",
        {"target_rate_hz": args.camera_hz, "publish_rate_hz": 5.0, "perception_pid": seg.pid},
        domain,
        out / "logs",
    )
    procs = [seg, monitor]
    replay = None
    try:
        print("starting nodes (model load and latency calibration)...", flush=True)
        if not wait_ready(domain, 180):
            print(seg.output()[-3000:], file=sys.stderr)
            raise SystemExit("segformer_node did not become ready")
        print(
            f"ready after {time.monotonic() - started:.0f} s; replaying {args.source} "
            f"for {args.duration:g} s",
            flush=True,
        )
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        replay_log = open(out / "logs" / "replay.log", "wb")
        replay = subprocess.Popen(
            [
                str(executable("replay")),
                str(bag),
                "--loop",
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--record",
                str(out / "output_bag"),
                "--record-topics",
                "/segmentation/stats",
                "/compute_budget",
                "/segmentation/mask",
                "/diagnostics",
                "--start-delay",
                "2",
            ],
            env=env,
            stdout=replay_log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(2.0 + args.burst[0])
        print(
            f"CPU burst: {args.burst_workers} busy processes for "
            f"{args.burst[1] - args.burst[0]:g} s",
            flush=True,
        )
        burst_ns = (time.time_ns(), time.time_ns() + int((args.burst[1] - args.burst[0]) * 1e9))
        burst = cpu_burst(args.burst[1] - args.burst[0], args.burst_workers)
        if replay.wait(timeout=args.duration + 60) != 0:
            raise SystemExit(f"replay failed: see {out / 'logs' / 'replay.log'}")
        for b in burst:
            b.join(timeout=1)
    finally:
        if replay is not None:
            if replay.poll() is None:
                replay.kill()
                replay.wait()
            replay_log.close()
        for proc in procs:
            proc.stop()

    tl = read_timeline(out / "output_bag")
    if tl.frames == 0:
        raise SystemExit(f"no frames were processed; see {out / 'logs'}")
    spans = [((burst_ns[0] - tl.t0_ns) / 1e9, (burst_ns[1] - tl.t0_ns) / 1e9, "CPU burst")]
    plots = plot_timeline(tl, out, "demo", spans)
    from dynvit_ros.engine.checkpoint import read_checkpoint
    from dynvit_ros.engine.masks import palette_array

    meta = read_checkpoint(args.model)[1]
    overlays = save_overlays(
        decode_frames(bag),
        read_masks(out / "output_bag"),
        palette_array(meta.palette, meta.num_classes),
        out,
        count=3,
    )
    summary = write_summary(out, tl, spans, plots, overlays, args, list(levels))
    print(summary.read_text())
    print(f"demo finished in {time.monotonic() - started:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
