# SPDX-License-Identifier: Apache-2.0
"""The shipped demo bag of real frames: within what may be shipped, attributed, readable."""

from pathlib import Path

import pytest

from dynvit_ros.bags.io import bag_topics, read_topic
from dynvit_ros.demo import camvid_sample
from dynvit_ros.training import camvid

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "camvid_street"


def test_shipped_sample_is_small_attributed_and_real_jpeg():
    bag = SHIPPED / "bag"
    messages = read_topic(bag, "/camera/image_raw/compressed")
    assert bag_topics(bag) == {
        "/camera/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", len(messages))
    }
    assert 1 <= len(messages) <= camvid_sample.MAX_FRAMES
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 4_000_000
    attribution = (SHIPPED / "ATTRIBUTION.md").read_text()
    assert "CC BY-NC 4.0" in attribution
    # Every frame is named, so the licence can be traced frame by frame.
    assert sum(line.startswith("- 0016E5_") for line in attribution.splitlines()) == len(messages)
    assert all(bytes(m.data[:2]) == b"\xff\xd8" for m in messages)  # JPEG start of image


def test_write_sample_refuses_more_than_may_be_shipped(tmp_path):
    with pytest.raises(ValueError, match="1 to 60"):
        camvid_sample.write_sample(tmp_path / "x", tmp_path, frames=61)


def test_write_sample_from_camvid(tmp_path):
    root = camvid.find_root()
    if root is None:
        pytest.skip("CamVid not found at ../shared/data/CamVid")
    bag = camvid_sample.write_sample(tmp_path / "sample", root, frames=3, rate_hz=5.0)
    messages = read_topic(bag, "/camera/image_raw/compressed")
    assert len(messages) == 3
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages]
    assert stamps[1] - stamps[0] == 200_000_000


def test_val_bag_holds_every_val_frame_in_order(tmp_path):
    root = camvid.find_root()
    if root is None:
        pytest.skip("CamVid not found at ../shared/data/CamVid")
    bag = camvid_sample.val_bag(tmp_path / "val", root, rate_hz=10.0, topic="/cam/compressed")
    assert bag_topics(bag) == {"/cam/compressed": ("sensor_msgs/msg/CompressedImage", 101)}
