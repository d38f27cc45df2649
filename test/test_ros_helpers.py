# SPDX-License-Identifier: Apache-2.0
"""Pure helpers of the ROS layer: error log, quoting, frame slot, QoS, stamps, image headers."""

import threading
import time

import cv2
import numpy as np
import pytest

from dynvit_ros.ros.diagnostics import ErrorLog, quote
from dynvit_ros.ros.image_io import ImageFormatError, encoded_size
from dynvit_ros.ros.stamps import seconds_to_fields, split_ns, to_ns


def test_quote_bounds_and_escapes_input():
    assert quote("abc") == "abc"
    long = quote("x" * 70_000)
    assert len(long) < 260 and long.startswith("x" * 200) and "chars" in long
    assert quote("auto\x00") == "auto\\x00"


def test_error_log_rate_limits_by_kind_not_text():
    log = ErrorLog(interval_s=5.0)
    assert log.report("rejected_images", "bad step 1", 0.0) == "bad step 1"
    assert log.report("rejected_images", "bad step 2", 1.0) is None  # other text, same kind
    assert log.report("errors", "boom", 1.0) == "boom"  # another kind is logged
    assert log.report("rejected_images", "bad step 3", 2.0) is None
    assert log.suppressed == 2
    line = log.report("rejected_images", "bad step 4", 6.0)
    assert line.startswith("bad step 4") and "2 more" in line
    assert log.counts == {"rejected_images": 4, "errors": 1}
    assert log.report("rejected_images", "y" * 10_000, 20.0).count("y") == 200


def test_frame_slot_keeps_newest_counts_drops_and_stops_cleanly():
    from dynvit_ros.ros.segmenter import FrameSlot

    seen, gate = [], threading.Event()

    def process(msg, dropped):
        gate.wait(5)
        seen.append((msg, dropped))

    slot = FrameSlot(process)
    slot.put("ignored before start")
    slot.start()
    slot.put(1)
    time.sleep(0.1)  # the worker holds 1
    slot.put(2)
    slot.put(3)  # replaces 2
    gate.set()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [(1, 0), (3, 1)]
    assert slot.counts() == {"frames_received": 3, "frames_dropped": 1}
    slot.stop()
    slot.put(4)
    time.sleep(0.05)
    assert len(seen) == 2


def test_stamps_round_trip():
    class T:
        sec, nanosec = 12, 345

    assert to_ns(T) == 12_000_000_345
    assert split_ns(12_000_000_345) == (12, 345)
    assert seconds_to_fields(1.5) == (1, 500_000_000)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_encoded_size_reads_headers_without_decoding(ext):
    image = np.zeros((37, 53, 3), np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    assert encoded_size(data) == (53, 37)
    assert encoded_size(b"not an image") is None


def test_compressed_bomb_is_refused_from_its_header():
    from types import SimpleNamespace

    from dynvit_ros.ros.image_io import compressed_to_rgb

    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    # Rewrite the IHDR size to 100000x100000: the header alone must be enough to refuse it.
    bomb = png[:16] + (100_000).to_bytes(4, "big") * 2 + png[24:]
    with pytest.raises(ImageFormatError, match="too large"):
        compressed_to_rgb(SimpleNamespace(format="png", data=bomb))
    with pytest.raises(ImageFormatError, match="too large"):
        compressed_to_rgb(SimpleNamespace(format="png", data=png), max_pixels=63)
    assert compressed_to_rgb(SimpleNamespace(format="png", data=png)).shape == (8, 8, 3)


def test_one_qos_vocabulary():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from dynvit_ros.ros.qos import QOS_CHOICES, matching_subscription, qos_profile

    for name in QOS_CHOICES:
        assert qos_profile(name, 1).depth == 1 and qos_profile(name, 10).depth == 10
    assert (
        qos_profile("reliable", 10).reliability
        == qos_profile("reliable", 1).reliability
        == ReliabilityPolicy.RELIABLE
    )
    assert qos_profile("sensor_data").reliability == ReliabilityPolicy.BEST_EFFORT
    with pytest.raises(ValueError):
        qos_profile("fast")
    mixed = matching_subscription([qos_profile("reliable"), qos_profile("sensor_data")])
    assert mixed.reliability == ReliabilityPolicy.BEST_EFFORT
    assert (
        matching_subscription([qos_profile("reliable")]).reliability == ReliabilityPolicy.RELIABLE
    )
    assert matching_subscription([]).durability == DurabilityPolicy.VOLATILE


def test_input_stream_estimates_frames_lost_before_the_node():
    from dynvit_ros.ros.input_stream import InputStream

    stream = InputStream()
    period = 33_333_333
    stamps = [i * period for i in range(1, 40)]
    for missing in (10, 20, 21, 22):  # four frames never arrived
        stamps.remove(missing * period)
    for ns in stamps:
        stream.arrived(ns)
    assert stream.frames_lost == 4
    assert abs(stream.rate_hz() - 30.0) < 0.01
    assert stream.faster_than(100.0) and not stream.faster_than(33.3)
    stream.arrived(0)  # unset stamps are ignored
    stream.arrived(stamps[-1])  # a repeated stamp is not a loss
    assert stream.frames_lost == 4 and stream.out_of_order == 1
