# SPDX-License-Identifier: Apache-2.0
"""Replay a rosbag2 (sqlite3 or MCAP) into live topics, optionally recording topics into a new bag.

    replay BAG [--rate 1.0] [--loop] [--remap /a:=/b] [--qos sensor_data]
               [--record OUT --record-topics /x /y]

Messages are published as the CDR bytes stored in the bag, so any message
type whose Python package is importable replays without conversion. ``rosbag2``
(``ros2 bag play``) is not available from PyPI; this covers what the tests and
the demo need from it.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
import queue
import sys
import threading
import time

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from dynvit_ros.bags.io import BagError, BagWriter, bag_topics, read_messages
from dynvit_ros.ros.qos import QOS_CHOICES, matching_subscription, qos_profile

PLAY_DEPTH = 10
RECORD_DEPTH = 100


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def parse_remaps(remaps: list[str]) -> dict[str, str]:
    out = {}
    for item in remaps:
        if ":=" not in item:
            raise ValueError(f"a remap is FROM:=TO, got {item!r}")
        src, dst = item.split(":=", 1)
        out[src] = dst
    return out


class BagRecorder:
    """Subscribes (raw) to topics once their type is known and writes what arrives.

    ``qos`` None adapts each subscription to what the topic's publishers offer
    (as ``ros2 bag record`` does): best effort if any publisher is, so a
    camera topic is recorded whatever its QoS. One thread owns the bag writer
    (the sqlite3 storage refuses use from other threads); callbacks only enqueue.
    """

    def __init__(
        self, node: Node, path: Path, topics: list[str], qos: QoSProfile | None, storage: str
    ):
        self.node, self.topics, self.qos = node, topics, qos
        self.counts = {t: 0 for t in topics}
        self.error: Exception | None = None
        self._queue: queue.Queue = queue.Queue()
        self._subs = {}
        opened = queue.Queue()
        self._thread = threading.Thread(
            target=self._write_loop, args=(path, storage, opened), daemon=True
        )
        self._thread.start()
        error = opened.get()
        if error is not None:
            raise error
        self._timer = node.create_timer(0.2, self._discover)

    def _write_loop(self, path: Path, storage: str, opened: queue.Queue) -> None:
        try:
            writer = BagWriter(path, storage=storage)
        except BagError as exc:
            opened.put(exc)
            return
        opened.put(None)
        try:
            while (item := self._queue.get()) is not None:
                writer.write(*item)
                self.counts[item[0]] += 1
        except Exception as exc:  # reported by close(); the bag is still closed properly
            self.error = exc
        finally:
            writer.close()

    def _discover(self) -> None:
        known = dict(self.node.get_topic_names_and_types())
        for topic in self.topics:
            if topic in self._subs or topic not in known:
                continue
            msgtype = known[topic][0]
            qos = self.qos
            if qos is None:
                offered = [
                    info.qos_profile for info in self.node.get_publishers_info_by_topic(topic)
                ]
                if not offered:
                    continue  # known only from a subscriber so far: wait for a publisher
                qos = matching_subscription(offered, RECORD_DEPTH)
            self._subs[topic] = self.node.create_subscription(
                message_class(msgtype),
                topic,
                lambda data, t=topic, m=msgtype: self._on_message(t, m, data),
                qos,
                raw=True,
            )
            self.node.get_logger().info(
                f"recording {topic} ({msgtype}, {qos.reliability.name.lower()})"
            )

    def wait_subscribed(self, stop: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every recorded topic is subscribed (a topic without a
        publisher yet is subscribed when one appears, so its first messages may be missed).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if all(topic in self._subs for topic in self.topics):
                return True
            stop.wait(0.05)
        return False

    def _on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        self._queue.put((topic, msgtype, time.time_ns(), data))

    def close(self) -> None:
        self._timer.cancel()
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise BagError(f"recording stopped early: {self.error}") from self.error


class BagPlayer(Node):
    def __init__(
        self,
        bag: Path,
        rate: float,
        loop: bool,
        remaps: dict[str, str],
        qos: str,
        topics: list[str] | None = None,
    ):
        super().__init__("bag_player")
        if rate < 0:
            raise ValueError("rate must be >= 0 (0 = as fast as possible)")
        self.bag, self.rate, self.loop, self.remaps = bag, rate, loop, remaps
        self.topics = topics
        self.qos = qos_profile(qos, PLAY_DEPTH)
        self.publishers_by_topic = {}
        self.published = 0
        # The index is read up front (a missing or unreadable bag fails before anything is
        # published); the messages are streamed while playing, so bag size is not bounded by
        # memory.
        index = bag_topics(bag, topics)
        if not index:
            raise BagError(f"{bag} holds no topics")
        for topic, (msgtype, _) in index.items():
            self._publisher(topic, msgtype)

    def wait_for_subscribers(self, stop: threading.Event, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every replayed topic has a subscriber (messages sent
        before discovery completes are lost, as with ``ros2 bag play``).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if all(pub.get_subscription_count() > 0 for pub in self.publishers_by_topic.values()):
                stop.wait(0.3)  # let reliable readers finish their handshake
                return True
            stop.wait(0.05)
        return False

    def _publisher(self, topic: str, msgtype: str):
        pub = self.publishers_by_topic.get(topic)
        if pub is None:
            pub = self.create_publisher(
                message_class(msgtype), self.remaps.get(topic, topic), self.qos
            )
            self.publishers_by_topic[topic] = pub
        return pub

    def play(self, stop: threading.Event, duration: float = 0.0) -> int:
        """Publish the bag (looping if asked) until it ends, ``stop`` is set or ``duration`` s
        passed.
        A bag that turns out damaged part-way raises BagError after what could be read was
        published.
        """
        started = time.monotonic()
        while not stop.is_set():
            t0 = wall0 = None
            for msg in read_messages(self.bag, self.topics):
                if stop.is_set() or (duration and time.monotonic() - started > duration):
                    return self.published
                if t0 is None:
                    t0, wall0 = msg.timestamp_ns, time.monotonic()
                if self.rate > 0:
                    delay = wall0 + (msg.timestamp_ns - t0) / 1e9 / self.rate - time.monotonic()
                    if delay > 0:
                        stop.wait(delay)
                self._publisher(msg.topic, msg.msgtype).publish(msg.data)
                self.published += 1
            if not self.loop:
                break
        return self.published


def main(args=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bag", type=Path)
    p.add_argument(
        "--rate", type=float, default=1.0, help="time factor; 0 publishes as fast as possible"
    )
    p.add_argument("--loop", action="store_true")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0 = end of bag)"
    )
    p.add_argument("--topics", nargs="*", default=None, help="only these bag topics")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO")
    p.add_argument("--qos", default="sensor_data", choices=QOS_CHOICES)
    p.add_argument("--record", type=Path, default=None, help="write these topics to a new bag")
    p.add_argument("--record-topics", nargs="*", default=[])
    p.add_argument(
        "--record-qos",
        default="auto",
        choices=("auto",) + QOS_CHOICES,
        help="auto: match what each topic's publishers offer",
    )
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    p.add_argument(
        "--start-delay",
        type=float,
        default=5.0,
        help="wait up to this many seconds for a subscriber on every replayed topic (and, "
        "with --record, for every recorded topic to be subscribed)",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=2.0,
        help="seconds to keep recording after the last message",
    )
    argv = sys.argv[1:] if args is None else args
    ros_args_at = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    opts = p.parse_args(argv[:ros_args_at])

    rclpy.init(args=["replay"] + argv[ros_args_at:])
    try:
        player = BagPlayer(
            opts.bag, opts.rate, opts.loop, parse_remaps(opts.remap), opts.qos, opts.topics
        )
    except (BagError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    recorder = None
    if opts.record:
        try:
            qos = None if opts.record_qos == "auto" else qos_profile(opts.record_qos, RECORD_DEPTH)
            recorder = BagRecorder(player, opts.record, opts.record_topics, qos, opts.storage)
        except BagError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            rclpy.try_shutdown()
            return 2
    stop = threading.Event()
    status = 0
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        if not player.wait_for_subscribers(stop, opts.start_delay):
            player.get_logger().warning("not every topic has a subscriber yet: playing anyway")
        if recorder and not recorder.wait_subscribed(stop, opts.start_delay):
            player.get_logger().warning(
                "not every recorded topic has a publisher yet: recording from when it appears"
            )
        try:
            count = player.play(stop, opts.duration)
            player.get_logger().info(f"published {count} messages")
            if not count and not stop.is_set():
                print(f"replay: {opts.bag} holds no messages", file=sys.stderr)
                status = 2
        except BagError as exc:
            print(f"replay: {exc} (after {player.published} messages)", file=sys.stderr)
            status = 2
        if recorder:
            stop.wait(opts.linger)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if recorder:
            try:
                recorder.close()
                player.get_logger().info(f"recorded {recorder.counts} into {opts.record}")
                empty = [t for t, n in recorder.counts.items() if not n]
                if empty:
                    player.get_logger().warning(f"nothing was recorded on {', '.join(empty)}")
            except BagError as exc:
                print(f"replay: {exc}", file=sys.stderr)
                status = 1
        executor.shutdown()
        # A daemon thread still inside spin() at interpreter exit aborts the process
        # ("terminate called without an active exception"): let it return first.
        spinner.join(timeout=5.0)
        player.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
