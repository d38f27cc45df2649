# SPDX-License-Identifier: Apache-2.0
"""Bags written with rosbags and replayed through a running segformer_node.

The node's outputs are recorded and read back.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from ros_harness import EXE_DIR, INPUT_HW, make_frame, segformer_params

from dynvit_ros.bags.io import EPOCH_NS, BagError, bag_topics, read_messages, write_image_bag
from dynvit_ros.demo.run_report import read_masks

H, W = INPUT_HW


def _write_bag(path, storage, frames=6):
    images = (make_frame(H, W, seed=i) for i in range(frames))
    write_image_bag(path, images, 10.0, "/cam/image", "bag_camera", False, storage)
    return [EPOCH_NS + i * 100_000_000 for i in range(frames)]


def _replay(domain_id, *args, timeout=90):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    return subprocess.run(
        [str(EXE_DIR / "replay"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_replay_through_node_and_record_outputs(ros, tiny_model, tmp_path, storage):
    stamps = _write_bag(tmp_path / "input", storage)
    ros.start(
        "segformer_node",
        "seg",
        segformer_params(tiny_model, mode="fixed"),
        remaps={"image": "/camera"},
    )
    node = ros.client.node
    assert ros.client.spin_until(lambda: node.get_subscriptions_info_by_topic("/camera"), 60), (
        "node not ready"
    )
    out = tmp_path / "output"
    result = _replay(
        ros.domain_id,
        tmp_path / "input",
        "--rate",
        "2",
        "--qos",
        "reliable",
        "--remap",
        "/cam/image:=/camera",
        "--record",
        out,
        "--storage",
        storage,
        "--record-topics",
        "/segmentation/stats",
        "/segmentation/mask",
        "--linger",
        "4",
    )
    assert result.returncode == 0, result.stderr
    recorded = list(read_messages(out))
    assert {m.topic for m in recorded} == {"/segmentation/stats", "/segmentation/mask"}
    masks = read_masks(out)
    assert masks and set(masks) <= set(stamps)
    assert all(mask.shape == (H, W) for mask in masks.values())


def test_corrupt_and_missing_bags_are_clear_errors(ros, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text(
        "rosbag2_bagfile_information: {version: 9, storage_identifier: mcap"
    )
    with pytest.raises(BagError, match="cannot read bag"):
        list(read_messages(broken))
    with pytest.raises(BagError, match="not found"):
        list(read_messages(tmp_path / "absent"))
    _write_bag(tmp_path / "cut", "mcap", frames=3)
    data = (tmp_path / "cut" / "cut.mcap").read_bytes()
    (tmp_path / "cut" / "cut.mcap").write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match="corrupt"):
        list(read_messages(tmp_path / "cut"))
    result = _replay(ros.domain_id, tmp_path / "absent", timeout=60)
    assert result.returncode == 2 and "bag not found" in result.stderr
    result = _replay(
        ros.domain_id, tmp_path / "cut", "--rate", "0", "--start-delay", "0", timeout=60
    )
    assert result.returncode == 2 and "corrupt" in result.stderr


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_the_index_is_read_without_the_messages(tmp_path, storage):
    _write_bag(tmp_path / "bag", storage, frames=4)
    assert bag_topics(tmp_path / "bag") == {"/cam/image": ("sensor_msgs/msg/Image", 4)}
    first = next(read_messages(tmp_path / "bag"))  # streamed: stopping early is fine
    assert first.topic == "/cam/image" and first.data


def test_unknown_topic_filter_lists_what_the_bag_has(tmp_path):
    _write_bag(tmp_path / "bag", "mcap", frames=2)
    with pytest.raises(BagError, match=r"has none of the topics.*'/cam/image'"):
        list(read_messages(tmp_path / "bag", ["/nope"]))
