# SPDX-License-Identifier: Apache-2.0
"""rosbag2 reading and writing through ``rosbags`` (sqlite3 or MCAP).

This package's messages are registered with ``rosbags``.

Messages stay CDR bytes end to end where possible: the replay tool publishes
them as they are and records what it receives as it arrives.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dynvit_ros.ros.stamps import split_ns
from dynvit_ros.share import PACKAGE, data_dirs


class BagError(RuntimeError):
    """A bag is missing, corrupt, or lacks what was asked for."""


def typestore():
    """ROS 2 Kilted message types plus ``dynvit_ros/msg/*``."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for folder in data_dirs("msg"):
        for path in sorted(folder.glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
        if types:
            break
    store.register(types)
    return store


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    timestamp_ns: int  # bag (receive) time
    data: bytes  # CDR


@contextmanager
def _open(path: str | Path, topics: Iterable[str] | None):
    """(reader, connections of the wanted topics); every reader error becomes a BagError."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        with AnyReader([path], default_typestore=typestore()) as reader:
            wanted = set(topics) if topics else None
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if wanted and not connections:
                have = sorted({c.topic for c in reader.connections})
                raise BagError(f"{path} has none of the topics {sorted(wanted)}; it has {have}")
            yield reader, connections
    except BagError:
        raise
    except Exception as exc:  # rosbags raises several reader-specific errors for damaged bags
        raise BagError(f"cannot read bag {path} (corrupt or not a rosbag2?): {exc}") from exc


def bag_topics(
    path: str | Path, topics: Iterable[str] | None = None
) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` from the bag's index, without reading its messages."""
    out: dict[str, tuple[str, int]] = {}
    with _open(path, topics) as (_, connections):
        for connection in connections:
            count = out.get(connection.topic, ("", 0))[1]
            out[connection.topic] = (connection.msgtype, count + connection.msgcount)
    return out


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a rosbag2 (sqlite3 or MCAP) in time order, one at a time."""
    with _open(path, topics) as (reader, connections):
        for connection, timestamp, data in reader.messages(connections=connections):
            yield BagMessage(connection.topic, connection.msgtype, timestamp, bytes(data))


def read_topic(path: str | Path, topic: str) -> list:
    """Deserialised messages (rosbags dataclasses) of one topic."""
    store = typestore()
    return [store.deserialize_cdr(m.data, m.msgtype) for m in read_messages(path, [topic])]


class BagWriter:
    """Write raw CDR messages, adding a connection the first time a topic appears."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag already exists: {self.path}")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f"unknown storage {storage!r}: use mcap or sqlite3")
        self.store = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, object] = {}

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[topic] = connection
        self._writer.write(connection, int(timestamp_ns), data)

    def write_message(self, topic: str, timestamp_ns: int, message) -> None:
        self.write(
            topic,
            message.__msgtype__,
            timestamp_ns,
            bytes(self.store.serialize_cdr(message, message.__msgtype__)),
        )

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_message(
    store, rgb: np.ndarray, stamp_ns: int, frame_id: str, compressed: bool, quality: int = 90
):
    """A rosbags sensor_msgs Image (rgb8) or CompressedImage (jpeg) for an RGB array."""
    sec, nanosec = split_ns(stamp_ns)
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
        frame_id=frame_id,
    )
    if compressed:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return store.types["sensor_msgs/msg/CompressedImage"](
            header=header, format="rgb8; jpeg compressed bgr8", data=jpeg.ravel()
        )
    height, width = rgb.shape[:2]
    return store.types["sensor_msgs/msg/Image"](
        header=header,
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(rgb).ravel(),
    )


EPOCH_NS = 1_700_000_000_000_000_000  # written bags start here, an arbitrary fixed time


def write_image_bag(
    path: str | Path,
    images: Iterable[np.ndarray],
    rate_hz: float = 10.0,
    topic: str = "/camera/image_raw/compressed",
    frame_id: str = "camera_optical_frame",
    compressed: bool = True,
    storage: str = "mcap",
    quality: int = 90,
) -> Path:
    """RGB frames as a camera recording: one image message every ``1 / rate_hz`` s, stamped
    (header and bag time alike) from :data:`EPOCH_NS`.
    """
    with BagWriter(path, storage=storage) as writer:
        for i, rgb in enumerate(images):
            stamp = EPOCH_NS + round(i * 1e9 / rate_hz)
            message = image_message(writer.store, rgb, stamp, frame_id, compressed, quality)
            writer.write_message(topic, stamp, message)
    return Path(path)
