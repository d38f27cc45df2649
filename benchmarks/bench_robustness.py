# SPDX-License-Identifier: Apache-2.0
"""Robustness campaign: fuzzing, hostile budgets and parameters, faults, a soak and an overload.

    make bench-robustness                     # about 15 minutes
    python benchmarks/bench_robustness.py --quick   # about a minute (run by make test)

Real nodes in their own processes over DDS (the installed executables, the
shipped model and parameters). Ends with one JSON line:
{"fuzz_cases", "crashes", "processing_errors", "uncounted", "peak_rss_mb", "bomb_refused",
 "hostile_budgets_accepted_wrongly", "fallback_s", "recovery_s", "exit_codes",
 "shutdown_error_lines", "soak_rss_drift_mb", "soak_unaccounted",
 "overload_param_latency_ms", "large_frames_received_pct", ...}
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO / "benchmarks"))

NODE = "seg"
DDS_PROFILE = REPO / "config" / "dds" / "fastdds_large_frames.xml"
ENCODINGS = [
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "rgb16",
    "bgra16",
    "bayer_rggb8",
    "bayer_grbg8",
    "yuv422",
    "uyvy",
    "yuyv",
    "32FC1",
    "16UC1",
    "8UC3",
    "jpeg",
    "",
    "RGB8",
    "rgb8\x00",
    "x" * 5000,
    "ünïcode",
    "64FC4",
]


# A camera-sized stream between two plain rclpy processes: what the transport alone delivers.
TRANSPORT_PEER = """
import array, sys, time
import rclpy
from sensor_msgs.msg import Image
from dynvit_ros.ros.qos import qos_profile
role, seconds = sys.argv[1], float(sys.argv[2])
rclpy.init()
node = rclpy.create_node("large_" + role)
if role == "pub":
    pub = node.create_publisher(Image, "/large", qos_profile("sensor_data", 5))
    msg = Image(height=1080, width=1920, encoding="rgb8", step=5760)
    msg.data = array.array("B", bytes(1080 * 5760))
    t0 = time.monotonic()
    while pub.get_subscription_count() == 0 and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    time.sleep(1.0)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / 30.0 - time.monotonic()))
    print(sent)
else:
    got = []
    node.create_subscription(Image, "/large", lambda m: got.append(1), qos_profile("sensor_data"))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(len(got))
"""


def large_frames_transport(seconds: float, domain: int) -> dict:
    """1920x1080 rgb8 at 30 Hz between two processes, with and without the shipped profile."""
    out = {}
    for label, profile in (("default", ""), ("shipped_profile", str(DDS_PROFILE))):
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), FASTDDS_DEFAULT_PROFILES_FILE=profile)
        if not profile:  # Fast DDS's own defaults (an empty path would be an error)
            del env["FASTDDS_DEFAULT_PROFILES_FILE"]
        sub = subprocess.Popen(
            [sys.executable, "-c", TRANSPORT_PEER, "sub", str(seconds + 8)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        pub = subprocess.run(
            [sys.executable, "-c", TRANSPORT_PEER, "pub", str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        received = int(sub.communicate(timeout=seconds + 60)[0].strip() or 0)
        sent = int(pub.stdout.strip() or 0)
        out[label] = round(100.0 * received / max(sent, 1), 1)
    return out


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return math.nan


class Campaign:
    def __init__(self, args):
        from ros_harness import RosClient

        from dynvit_ros.demo.node_process import NodeProcess

        self.args, self.NodeProcess = args, NodeProcess
        self.work = Path(tempfile.mkdtemp(prefix="dynvit_robust_"))
        self.domain = 60 + os.getpid() % 40
        self.client = RosClient(self.domain)
        self.results: dict = {}
        self.peak_rss = 0.0
        self.rng = random.Random(7)

    # -- processes ----------------------------------------------------------------
    def params(self, **extra) -> dict:
        p = {
            "model_path": str(REPO / "models" / "segformer_b0_camvid.safetensors"),
            "levels_path": str(REPO / "config" / "segformer_b0_camvid.levels.yaml"),
            "latency_model": "accelerator",
            "diagnostics_period_s": 0.2,
            "qos": "reliable",
            "budget_timeout_s": 2.0,
        }
        p.update(extra)
        return p

    def start(self, exe: str, name: str, params: dict, remaps=None):
        return self.NodeProcess(exe, name, params, self.domain, self.work / name, remaps)

    def wait_subscribed(self, pub, timeout=120.0) -> None:
        if not self.client.spin_until(lambda: pub.get_subscription_count() > 0, timeout):
            raise SystemExit("segformer_node never subscribed")

    # -- helpers --------------------------------------------------------------------
    def diag(self, node: str = NODE) -> dict:
        from ros_harness import diagnostics_values

        return diagnostics_values(self.diags, f"{node}: segmentation") or {}

    def settle(self, seconds: float = 1.0, node: str = NODE) -> dict:
        self.client.spin_for(seconds)
        return self.diag(node)

    def valid_frame(self):
        from sensor_msgs.msg import Image

        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[:, :32] = (200, 30, 30)
        msg = Image(height=48, width=64, encoding="rgb8", step=192)
        msg.data = array.array("B", rgb.tobytes())
        msg.header.frame_id = "valid"
        return msg

    def masks_still_come(self, pub, frame, timeout=20.0) -> bool:
        before = len(self.masks)
        return self.client.spin_until(
            lambda: len(self.masks) > before, timeout, every=(0.2, lambda: pub.publish(frame))
        )

    def watch_rss(self, proc) -> None:
        self.peak_rss = max(self.peak_rss, rss_mb(proc.pid))

    # -- fuzz -------------------------------------------------------------------------
    def raw_case(self):
        from sensor_msgs.msg import Image

        r = self.rng
        enc = r.choice(ENCODINGS)
        h = r.choice([0, 1, 2, 7, 48, 480, 1 << 15, 2**31 - 1, 4096, 5000])
        w = r.choice([0, 1, 3, 64, 640, 1 << 15, 2**31 - 1, 4096, 5000])
        bpp = r.choice([1, 2, 3, 4, 6, 8])
        step = r.choice([0, w * bpp, w * bpp - 1, w * bpp + 13, 2**31 - 1]) % 2**32
        size = r.choice(
            [
                0,
                10,
                48 * 64 * 3,
                48 * 64 * 3 - 1,
                1 << 20,
                min(h * step, 1 << 21) if h * step >= 0 else 0,
            ]
        )
        msg = Image(
            height=h % 2**32,
            width=w % 2**32,
            encoding=enc,
            step=step,
            is_bigendian=r.choice([0, 1]),
        )
        msg.data = array.array("B", os.urandom(min(size, 1 << 18)))
        return msg

    def compressed_case(self):
        from sensor_msgs.msg import CompressedImage

        r = self.rng
        kind = r.choice(
            ["random", "truncated", "flip", "empty", "format", "png_bomb", "jpeg_bomb", "valid"]
        )
        data, fmt = b"", r.choice(["jpeg", "png", "rgb8; jpeg compressed bgr8"])
        if kind == "random":
            data = os.urandom(r.randint(1, 4096))
        elif kind == "truncated":
            data = self.jpeg[: r.randint(1, len(self.jpeg) - 1)]
        elif kind == "flip":
            b = bytearray(self.jpeg)
            for _ in range(r.randint(1, 20)):
                b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            data = bytes(b)
        elif kind == "format":
            data, fmt = (
                self.jpeg,
                r.choice(["theora", "16UC1; compressedDepth png", "x" * 3000, ""]),
            )
        elif kind == "png_bomb":
            data, fmt = self.png_bomb, "png"
        elif kind == "jpeg_bomb":
            data, fmt = self.jpeg_bomb, "jpeg"
        elif kind == "valid":
            data = self.jpeg
        msg = CompressedImage(format=fmt)
        msg.data = array.array("B", data)
        return msg, kind

    def fuzz(self, raw_cases: int, compressed_cases: int) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        rgb = np.zeros((48, 64, 3), np.uint8)
        self.jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
        png = cv2.imencode(".png", rgb)[1].tobytes()
        # 100000 x 100000 declared in a valid-looking header: refused before any decoding.
        self.png_bomb = png[:16] + (100_000).to_bytes(4, "big") * 2 + png[24:]
        j = bytearray(self.jpeg)
        sof = j.index(b"\xff\xc0")
        j[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2
        self.jpeg_bomb = bytes(j)
        bombs = {"sent": 0}
        totals = {"crashes": 0, "fuzz_cases": 0}
        for kind, cases in (("raw", raw_cases), ("compressed", compressed_cases)):
            seg = self.start(
                "segformer_node",
                NODE,
                self.params(input_type=kind, max_image_pixels=16_777_216),
                remaps={"image": "/fuzz/image"},
            )
            pub = self.client.node.create_publisher(
                CompressedImage if kind == "compressed" else Image, "/fuzz/image", reliable
            )
            self.wait_subscribed(pub)
            batch = 100
            for start in range(0, cases, batch):
                for _ in range(min(batch, cases - start)):
                    if kind == "raw":
                        pub.publish(self.raw_case())
                    else:
                        msg, what = self.compressed_case()
                        bombs["sent"] += what.endswith("bomb")
                        pub.publish(msg)
                    totals["fuzz_cases"] += 1
                    self.client.executor.spin_once(timeout_sec=0.005)
                    self.watch_rss(seg)
                if not seg.alive():
                    totals["crashes"] += 1
                    break
                valid = self.valid_frame()
                if kind == "compressed":
                    valid = CompressedImage(format="jpeg", data=array.array("B", self.jpeg))
                if not self.masks_still_come(pub, valid):
                    totals.setdefault("valid_frames_lost_after_batch", 0)
                    totals["valid_frames_lost_after_batch"] += 1
            values = self.settle(1.5)
            self.watch_rss(seg)
            processed = int(values.get("frames_processed", 0))
            rejected = int(values.get("rejected_images", 0))
            errors = int(values.get("processing_errors", 0))
            received, dropped = (
                int(values.get("frames_received", 0)),
                int(values.get("frames_dropped", 0)),
            )
            totals[f"{kind}_received"] = received
            totals[f"{kind}_rejected"] = rejected
            totals["processing_errors"] = totals.get("processing_errors", 0) + errors
            totals["uncounted"] = totals.get("uncounted", 0) + (
                received - processed - dropped - rejected - errors
            )
            if kind == "compressed":
                log = seg.output()
                totals["bomb_refused"] = "too large" in log or rejected > 0
                totals["bombs_sent"] = bombs["sent"]
            seg_rc = seg.stop()
            totals.setdefault("fuzz_exit_codes", []).append(seg_rc)
            totals["max_log_line"] = max(
                totals.get("max_log_line", 0),
                max((len(x) for x in seg.output().splitlines()), default=0),
            )
            self.client.node.destroy_publisher(pub)
        totals["peak_rss_mb"] = round(self.peak_rss, 1)
        self.results.update(totals)

    # -- budgets and parameters --------------------------------------------------------
    def hostile_budgets(self, pub_budget, count: int) -> None:
        from builtin_interfaces.msg import Duration

        from dynvit_ros.engine.levels import LevelTable
        from dynvit_ros.msg import ComputeBudget

        levels = len(LevelTable.load(self.params()["levels_path"]))
        before = self.settle(1.0)
        accepted0 = int(before.get("budgets_received", 0))
        r = self.rng
        sent = 0
        for i in range(count):
            msg = ComputeBudget(valid=True, source=r.choice(["x", "y" * 20000, "\x00\x01"]))
            kind = i % 6
            if kind == 0:
                msg.budget_ms = r.choice(
                    [math.nan, math.inf, -math.inf, -5.0, 0.0, 1.4e-45, 1e30, -1e-300]
                )
            elif kind == 1:
                # The first level past the table is the boundary case.
                msg.budget_ms = 50.0
                msg.pinned_level = r.choice([-2, -32768, levels, levels + 92, 32767])
            elif kind == 2:
                msg.budget_ms = 50.0
                msg.expires_after = Duration(sec=r.choice([-1, -100, -(2**31)]), nanosec=0)
            elif kind == 3:
                msg.budget_ms = r.choice([0.001, 1e-8, 6.1e4, 1e9])
            elif kind == 4:
                msg.budget_ms, msg.pinned_level = math.nan, r.choice([-2, 99])
            else:
                msg.valid, msg.budget_ms = False, 50.0
            pub_budget.publish(msg)
            sent += 1
            self.client.spin_for(0.01)
        after = self.settle(1.5)
        self.results["hostile_budgets_sent"] = sent
        self.results["hostile_budgets_accepted_wrongly"] = (
            int(after.get("budgets_received", 0)) - accepted0
        )
        self.results["hostile_budgets_rejected"] = int(after.get("rejected_budgets", 0)) - int(
            before.get("rejected_budgets", 0)
        )
        self.results["invalid_budgets_ignored"] = int(after.get("invalid_budgets_ignored", 0))

    def hostile_parameters(self, count: int) -> None:
        names = [
            "mode",
            "skip_level",
            "budget_ms",
            "latency_safety",
            "model_path",
            "diagnostics_period_s",
            "hysteresis_frames",
            "overlay_alpha",
            "no_such_parameter",
            "default_budget_ms",
            "autostart",
            "qos",
        ]
        values = [
            math.nan,
            -1,
            10**12,
            "auto\x00",
            "turbo",
            "",
            True,
            [1, 2],
            -0.0,
            1e308,
            "x" * 10000,
            3.5,
            7,
            "fixed",
        ]
        live = [
            "mode",
            "skip_level",
            "budget_ms",
            "latency_safety",
            "hysteresis_frames",
            "overlay_alpha",
            "default_budget_ms",
        ]
        before = self.client.get_parameters(NODE, live)
        accepted, empty_reasons, sent = 0, 0, 0
        for _ in range(count):
            name, value = self.rng.choice(names), self.rng.choice(values)
            try:
                (result,) = self.client.set_parameters(NODE, {name: value})
            except Exception:  # a value rclpy cannot even encode: refused client-side
                continue
            sent += 1
            if result.successful:  # a legal value (e.g. mode=fixed): put the old one back
                accepted += 1
                self.client.set_parameters(NODE, before)
            elif not result.reason:
                empty_reasons += 1
        after = self.client.get_parameters(NODE, live)
        self.results["hostile_parameter_sets"] = sent
        self.results["legal_parameter_values_accepted"] = accepted
        self.results["refusals_without_reason"] = empty_reasons
        self.results["parameters_changed_by_refusals"] = sorted(
            k for k in live if after.get(k) != before.get(k)
        )

    # -- faults -----------------------------------------------------------------------
    def monitor_kill_and_restart(self, seg) -> None:
        monitor = self.start("load_monitor_node", "monitor", {"publish_rate_hz": 10.0})
        ok = self.client.spin_until(
            lambda: self.diag().get("budget_source") == "topic",
            60,
            every=(0.1, lambda: self.frame_pub.publish(self.valid_frame())),
        )
        monitor.proc.send_signal(signal.SIGKILL)
        monitor.wait(5)
        killed = time.monotonic()
        fell_back = self.client.spin_until(
            lambda: self.diag().get("budget_source") == "fallback",
            30,
            every=(0.05, lambda: self.frame_pub.publish(self.valid_frame())),
        )
        self.results["fallback_s"] = (
            round(time.monotonic() - killed, 2) if ok and fell_back else None
        )
        restarted = time.monotonic()
        monitor = self.start("load_monitor_node", "monitor2", {"publish_rate_hz": 10.0})
        back = self.client.spin_until(
            lambda: self.diag().get("budget_source") == "topic",
            60,
            every=(0.05, lambda: self.frame_pub.publish(self.valid_frame())),
        )
        self.results["recovery_s"] = round(time.monotonic() - restarted, 2) if back else None
        monitor.stop()

    def checkpoints_and_tables(self) -> None:
        marker = self.work / "payload_ran"
        evil = self.work / "evil.pth"
        code = (
            "import torch, pathlib\n"
            "class P:\n"
            "    def __reduce__(self):\n"
            f"        return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))\n"
            f"torch.save({{'state_dict': {{}}, 'x': P()}}, {str(evil)!r})\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
        evil_table = self.work / "evil.levels.yaml"
        evil_table.write_text(f"levels: !!python/object/apply:os.system ['touch {marker}']\n")
        text_pth = self.work / "notes.pth"
        text_pth.write_text("not weights\n")
        truncated = self.work / "trunc.safetensors"
        truncated.write_bytes(
            (REPO / "models" / "segformer_b0_camvid.safetensors").read_bytes()[:5000]
        )
        refused = 0
        cases = [
            {"model_path": str(evil)},
            {"model_path": str(text_pth)},
            {"model_path": str(truncated)},
            {"levels_path": str(evil_table)},
        ]
        procs = [
            self.start("segformer_node", f"bad{i}", self.params(**extra))
            for i, extra in enumerate(cases)
        ]
        for proc in procs:
            rc = proc.wait(120)
            refused += rc not in (None, 0) and "cannot start" in proc.output()
            proc.stop()
        self.results["bad_models_refused"] = f"{refused}/{len(cases)}"
        self.results["malicious_code_ran"] = marker.exists()

    def truncated_bag(self) -> None:
        bag = REPO / "data" / "sample_street"
        mcap = next(bag.glob("*.mcap"))
        broken = self.work / "broken_bag"
        broken.mkdir()
        for f in bag.iterdir():
            data = f.read_bytes()
            (broken / f.name).write_bytes(data[: len(data) // 3] if f == mcap else data)
        exe = REPO / "install" / "dynvit_ros" / "lib" / "dynvit_ros" / "replay"
        run = subprocess.run(
            [str(exe), str(broken), "--rate", "0", "--start-delay", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, ROS_DOMAIN_ID=str(self.domain)),
        )
        self.results["truncated_bag_exit"] = run.returncode

    def shutdown(self) -> None:
        codes, error_lines, seconds = [], 0, []
        from sensor_msgs.msg import Image

        for sig in (signal.SIGINT, signal.SIGTERM):
            seg = self.start(
                "segformer_node", f"stop{sig}", self.params(), remaps={"image": "/stop/image"}
            )
            pub = self.client.node.create_publisher(Image, "/stop/image", 5)
            self.wait_subscribed(pub)
            self.client.spin_until(
                lambda: False, 2.0, every=(0.03, lambda: pub.publish(self.valid_frame()))
            )
            start = time.monotonic()
            seg.proc.send_signal(sig)
            codes.append(seg.wait(30))
            seconds.append(round(time.monotonic() - start, 2))
            out = seg.output()
            error_lines += sum(
                1
                for line in out.splitlines()
                if "[ERROR]" in line or "context is invalid" in line or "Traceback" in line
            )
            seg.stop()
            self.client.node.destroy_publisher(pub)
        self.results["exit_codes"] = codes
        self.results["shutdown_s"] = seconds
        self.results["shutdown_error_lines"] = error_lines

    # -- soak and overload ------------------------------------------------------------
    def stream(self, seg, pub, seconds: float, hz: float, make, checkpoints=()) -> dict:
        sent, rss, start = 0, {}, time.monotonic()
        next_frame = start
        marks = list(checkpoints)
        while (now := time.monotonic()) - start < seconds:
            if now >= next_frame:
                msg = make()
                msg.header.stamp = self.client.node.get_clock().now().to_msg()
                pub.publish(msg)
                sent += 1
                next_frame += 1.0 / hz
            if marks and now - start >= marks[0]:
                rss[marks.pop(0)] = round(rss_mb(seg.pid), 1)
            self.client.executor.spin_once(timeout_sec=0.002)
        return {"sent": sent, "rss": rss}

    def soak(self, seconds: float) -> None:
        from sensor_msgs.msg import Image

        seg = self.start(
            "segformer_node",
            "soak",
            self.params(qos="sensor_data"),
            remaps={"image": "/soak/image"},
        )
        monitor = self.start("load_monitor_node", "soak_monitor", {"target_rate_hz": 30.0})
        from rclpy.qos import qos_profile_sensor_data

        pub = self.client.node.create_publisher(Image, "/soak/image", qos_profile_sensor_data)
        self.wait_subscribed(pub)
        rgb = np.random.default_rng(0).integers(0, 256, (360, 480, 3), np.uint8)
        frame = Image(height=360, width=480, encoding="rgb8", step=1440)
        frame.data = array.array("B", rgb.tobytes())
        self.stats.clear()
        marks = [min(60.0, seconds * 0.1), seconds * 0.5, seconds - 1.0]
        out = self.stream(seg, pub, seconds, 30.0, lambda: frame, marks)
        values = self.settle(2.0, "soak")
        received = int(values.get("frames_received", 0))
        accounted = sum(
            int(values.get(k, 0))
            for k in ("frames_processed", "frames_dropped", "rejected_images", "processing_errors")
        )
        rss = list(out["rss"].values())
        ages = [s.latency_ms for s in self.stats]
        n = max(1, len(ages) // 10)
        self.results.update(
            {
                "soak_s": seconds,
                "soak_sent": out["sent"],
                "soak_received": received,
                "soak_unaccounted": received - accounted,
                "soak_rss_mb": rss,
                "soak_rss_drift_mb": round(rss[-1] - rss[0], 1) if len(rss) > 1 else None,
                "soak_frame_age_ms_first_last": [
                    round(float(np.median(ages[:n])), 1),
                    round(float(np.median(ages[-n:])), 1),
                ]
                if ages
                else None,
            }
        )
        monitor.stop()
        seg.stop()
        self.client.node.destroy_publisher(pub)

    def overload(self, seconds: float) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        seg = self.start(
            "segformer_node", "big", self.params(qos="sensor_data"), remaps={"image": "/big/image"}
        )
        pub = self.client.node.create_publisher(Image, "/big/image", qos_profile_sensor_data)
        self.wait_subscribed(pub)
        rgb = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), np.uint8)
        frame = Image(height=1080, width=1920, encoding="rgb8", step=5760)
        frame.data = array.array("B", rgb.tobytes())
        self.stats.clear()
        diag_count = len(self.diags)
        latencies, sent, start = [], 0, time.monotonic()
        next_frame, next_param = start, start + 1.0
        while (now := time.monotonic()) - start < seconds:
            if now >= next_frame:
                frame.header.stamp = self.client.node.get_clock().now().to_msg()
                pub.publish(frame)
                sent += 1
                next_frame += 1.0 / 30.0
            if now >= next_param:
                t0 = time.monotonic()
                self.client.get_parameters("big", ["mode"])
                self.client.set_parameters("big", {"hysteresis_frames": 3})
                latencies.append((time.monotonic() - t0) * 1e3)
                next_param = time.monotonic() + 2.0
            self.client.executor.spin_once(timeout_sec=0.002)
        self.client.spin_for(2.0)
        values = self.diag("big")
        received = int(values.get("frames_received", 0))
        ages = [s.latency_ms for s in self.stats]
        self.results.update(
            {
                "large_frames_sent": sent,
                "large_frames_received": received,
                "large_frames_received_pct": round(100.0 * received / max(sent, 1), 1),
                "overload_param_latency_ms": round(max(latencies), 1) if latencies else None,
                "overload_diagnostics": len(self.diags) - diag_count,
                "overload_frame_age_ms_p95": round(float(np.percentile(ages, 95)), 1)
                if ages
                else None,
            }
        )
        seg.stop()

    def run(self) -> dict:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from dynvit_ros.msg import ComputeBudget, InferenceStats

        q = self.args.quick
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diags = self.client.collect(DiagnosticArray, "/diagnostics", qos)
        self.masks = self.client.collect(Image, "/segmentation/mask", qos)
        self.stats = self.client.collect(InferenceStats, "/segmentation/stats", qos)
        self.client.collect(Image, "/big/segmentation/mask", qos)
        self.fuzz(200 if q else 2000, 120 if q else 1000)

        seg = self.start("segformer_node", NODE, self.params(), remaps={"image": "/cam/image"})
        self.frame_pub = self.client.node.create_publisher(Image, "/cam/image", qos)
        self.wait_subscribed(self.frame_pub)
        budget_pub = self.client.node.create_publisher(ComputeBudget, "/compute_budget", qos)
        self.hostile_budgets(budget_pub, 60 if q else 500)
        self.hostile_parameters(25 if q else 200)
        self.monitor_kill_and_restart(seg)
        self.results["main_node_alive"] = seg.alive()
        seg.stop()
        self.checkpoints_and_tables()
        self.truncated_bag()
        self.shutdown()
        self.soak(10.0 if q else 600.0)
        self.overload(6.0 if q else 60.0)
        self.results["transport_1080p_received_pct"] = large_frames_transport(
            5.0 if q else 60.0, self.domain + 1
        )
        self.client.close()
        return self.results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="about a minute (make test)")
    args = p.parse_args(argv)
    # The shipped DDS settings, as the launch files set them, for every process started here.
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(DDS_PROFILE))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from dynvit_ros.hostload import HostLoad

    started = time.monotonic()
    with HostLoad() as load:
        results = Campaign(args).run()
    results["host_load"] = load.report()
    results["wall_s"] = round(time.monotonic() - started, 1)
    results["crashes"] = results.get("crashes", 0) + (0 if results.get("main_node_alive") else 1)
    for key, value in results.items():
        print(f"{key:36} {value}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
