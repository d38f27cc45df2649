# SPDX-License-Identifier: Apache-2.0
"""segformer_node under a camera that is faster than the model: queue, drops, memory, overhead.

    python benchmarks/bench_node.py [--rate 30] [--duration 60] [--model M --levels L --level 0]

Starts the installed node (as launch_ros would) in fixed mode on a slow level,
publishes 480x360 bgr8 frames at --rate for --duration seconds, and reports:
- queue: the age of each frame when its result is published (stats.latency_ms)
  must not grow over the run (first vs last quarter), since only the newest
  frame is kept;
- drops: frames sent = received by the node + lost in transport, and received =
  processed + dropped (+ at most one in flight), from the node's diagnostics;
- memory: the node's RSS once a second; flat means the median of the last
  third of the run is within 20 MB of the middle third's;
- overhead: the node's own time per frame beyond inference (stats.total_ms -
  stats.measured_ms: decode, colourise, building and publishing messages), and
  an in-process breakdown of decode / upsample+argmax / colourise / message
  building at 480x360. Target: <= 5 ms.
Without --model it uses a random-weight SegFormer-B0 at 360x480 (the timing
does not depend on the weights). Writes outputs/bench_node.json and prints
one JSON line last.
"""

from __future__ import annotations

import argparse
import array
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
import ros_harness  # noqa: E402  (starts installed nodes the way launch_ros does)

H, W = 360, 480


def _random_model(folder: Path) -> tuple[str, str]:
    from dynvit_ros.engine.checkpoint import ModelMetadata, save_checkpoint
    from dynvit_ros.engine.levels import LevelTable
    from dynvit_ros.engine.model import build_segformer
    from dynvit_ros.engine.skip import FULL, SkipConfig

    model = build_segformer("b0", 11)
    path = save_checkpoint(
        folder / "bench_b0.safetensors",
        model,
        ModelMetadata(variant="b0", num_classes=11, input_size=[H, W]),
    )
    levels = LevelTable.from_configs([FULL, SkipConfig(name="s0.5", input_scale=0.5)]).save(
        folder / "bench_b0.levels.yaml"
    )
    return str(path), str(levels)


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {}
    q = np.percentile(values, [50, 95])
    return {"p50": round(float(q[0]), 3), "p95": round(float(q[1]), 3), "n": len(values)}


def overhead_breakdown(num_classes: int = 11, repeats: int = 30) -> dict:
    """Per-frame costs of the node's own work at 480x360, measured in this process."""
    from sensor_msgs.msg import Image
    import torch

    from dynvit_ros.engine.masks import colorize, logits_to_masks, palette_array
    from dynvit_ros.ros.image_io import to_image_msg, to_rgb

    frame = ros_harness.make_frame(H, W)
    msg = Image(height=H, width=W, encoding="bgr8", step=W * 3)
    msg.data = array.array("B", frame[..., ::-1].tobytes())
    # The model's logits are a channels-last view, as here.
    logits = torch.randn(1, H // 4, W // 4, num_classes).permute(0, 3, 1, 2)
    palette = palette_array([], num_classes)

    def timed(fn) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    mask = logits_to_masks(logits, (H, W))[0]
    colour = colorize(mask, palette)
    with torch.inference_mode():
        parts = {
            "decode_bgr8_ms": timed(lambda: to_rgb(msg)),
            "colorize_ms": timed(lambda: colorize(mask, palette)),
            "mask_msg_ms": timed(lambda: to_image_msg(mask, "mono8")),
            "color_msg_ms": timed(lambda: to_image_msg(colour, "rgb8")),
        }
        common = sum(parts.values())
        for mode in ("logits", "mask"):  # the node's mask_upsampling parameter
            parts[f"upsample_argmax_{mode}_ms"] = timed(
                lambda m=mode: logits_to_masks(logits, (H, W), m)
            )
    parts = {k: round(v, 3) for k, v in parts.items()}
    for mode in ("logits", "mask"):
        parts[f"total_{mode}_ms"] = round(common + parts[f"upsample_argmax_{mode}_ms"], 3)
    return parts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    p.add_argument("--model", help="checkpoint (default: random-weight B0 at 360x480)")
    p.add_argument("--levels", help="skip-level table for --model")
    p.add_argument("--level", type=int, default=0, help="fixed skip level (0 = full, the slowest)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the node")
    p.add_argument("--out", default=str(REPO / "outputs" / "bench_node.json"))
    args = p.parse_args(argv)

    reason = ros_harness.missing_install_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dynvit_ros.msg import InferenceStats

    workdir = Path(tempfile.mkdtemp(prefix="bench_node_"))
    model, levels = (args.model, args.levels or "") if args.model else _random_model(workdir)
    domain = ros_harness.next_domain_id()
    node = ros_harness.NodeProcess(
        "segformer_node",
        "bench_seg",
        {
            "model_path": model,
            "levels_path": levels,
            "mode": "fixed",
            "skip_level": args.level,
            "num_threads": args.threads,
            "latency_model": "accelerator",
            "publish_color": True,
            "diagnostics_period_s": 0.5,
        },
        domain,
        workdir,
        remaps={"image": "/bench/image"},
    )
    client = ros_harness.RosClient(domain)
    try:
        pub = client.node.create_publisher(Image, "/bench/image", qos_profile_sensor_data)
        stats = client.collect(InferenceStats, "/segmentation/stats", 100)
        diags = client.collect(DiagnosticArray, "/diagnostics", 10)
        if not client.spin_until(lambda: pub.get_subscription_count() > 0, 120):
            raise RuntimeError("node did not come up:\n" + node.output())
        proc = psutil.Process(node.proc.pid)

        frame = ros_harness.make_frame(H, W)[..., ::-1].tobytes()
        sent = [0]

        def publish():
            msg = Image(height=H, width=W, encoding="bgr8", step=W * 3)
            msg.header.stamp = client.node.get_clock().now().to_msg()
            msg.header.frame_id = f"f{sent[0]}"
            msg.data = array.array("B", frame)
            pub.publish(msg)
            sent[0] += 1

        memory: list[tuple[float, float]] = []
        start = time.monotonic()
        next_mem = start
        period = 1.0 / args.rate
        next_frame = start
        while time.monotonic() - start < args.duration:
            now = time.monotonic()
            if now >= next_frame:
                publish()
                next_frame += period
                if now - next_frame > 1.0:  # fell far behind: do not burst
                    next_frame = now + period
            if now >= next_mem:
                memory.append((now - start, proc.memory_info().rss / 2**20))
                next_mem += 1.0
            client.executor.spin_once(
                timeout_sec=max(0.0, min(next_frame, next_mem) - time.monotonic())
            )
        client.spin_for(3.0)  # the last result and diagnostics
        diag = ros_harness.diagnostics_values(diags, "bench_seg: segmentation") or {}
    finally:
        client.close()
        rc = node.stop()

    ages = [s.latency_ms for s in stats]
    quarter = max(1, len(ages) // 4)
    own = [s.total_ms - s.measured_ms for s in stats]
    received, processed = int(diag.get("frames_received", 0)), int(diag.get("frames_processed", 0))
    dropped = int(diag.get("frames_dropped", 0))
    rss = np.array([m[1] for m in memory])
    third = len(rss) // 3
    # The allocator makes RSS a sawtooth: compare the middle and last thirds (after warm-up).
    growth = (
        float(np.median(rss[-third:]) - np.median(rss[third : 2 * third]))
        if third >= 3
        else float("nan")
    )
    result = {
        "rate_hz": args.rate,
        "duration_s": args.duration,
        "input": f"{W}x{H} bgr8",
        "level": args.level,
        "node_exit": rc,
        "frames": {
            "sent": sent[0],
            "received": received,
            "processed": processed,
            "dropped": dropped,
            "lost_in_transport": sent[0] - received,
            "unaccounted": received - processed - dropped,
            "dropped_in_stats": int(sum(s.frames_dropped for s in stats)),
        },
        "processed_rate_hz": round(processed / args.duration, 2),
        "infer_ms": _quantiles([s.measured_ms for s in stats]),
        "frame_age_ms": {
            "first_quarter": _quantiles(ages[:quarter]),
            "last_quarter": _quantiles(ages[-quarter:]),
        },
        "memory_mb": {
            "start": round(float(rss[0]), 1) if len(rss) else None,
            "end": round(float(rss[-1]), 1) if len(rss) else None,
            "max": round(float(rss.max()), 1) if len(rss) else None,
            "median_last_minus_middle_third": round(growth, 1),
            "series_1hz": [round(float(v), 1) for v in rss],
        },
        "node_overhead_ms": _quantiles(own),
        "overhead_breakdown_480x360": overhead_breakdown(),
    }
    ok_queue = (
        result["frame_age_ms"]["last_quarter"].get("p50", 0)
        <= 2.0 * result["frame_age_ms"]["first_quarter"].get("p50", 1) + 50
    )
    result["checks"] = {
        "no_queue_growth": bool(ok_queue),
        "drops_counted": abs(result["frames"]["unaccounted"]) <= 1
        and result["frames"]["dropped_in_stats"] <= dropped,
        "memory_flat": bool(growth < 20.0) if growth == growth else None,
        "overhead_le_5ms": result["node_overhead_ms"].get("p50", 99) <= 5.0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"sent {sent[0]} frames at {args.rate} Hz for {args.duration:.0f} s; "
        f"node received {received}, "
        f"processed {processed} ({result['processed_rate_hz']} Hz), dropped {dropped}"
    )
    print(
        f"inference {result['infer_ms']}; frame age first/last quarter "
        f"{result['frame_age_ms']['first_quarter'].get('p50')} / "
        f"{result['frame_age_ms']['last_quarter'].get('p50')} ms"
    )
    mem = {k: v for k, v in result["memory_mb"].items() if k != "series_1hz"}
    print(f"node RSS MB {mem}; node overhead per frame {result['node_overhead_ms']}")
    print(f"overhead breakdown at 480x360: {result['overhead_breakdown_480x360']}")
    print(json.dumps(result))
    return 0 if all(v is not False for v in result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
