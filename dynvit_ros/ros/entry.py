# SPDX-License-Identifier: Apache-2.0
"""The body of every node's ``main``: init, construct, spin, and a clean stop on SIGINT/SIGTERM.

rclpy's own signal handler shuts the context down at once, while a worker
thread may still be publishing ("publisher's context is invalid"). Here the
signal only asks the spin loop to end; the node is destroyed (its worker
joined) before the context goes away, and the exit status is 0.
"""

from __future__ import annotations

import signal
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


def _autostart(node: Node) -> bool:
    """Configure and activate a lifecycle node that asks for it; False if configure failed."""
    if not getattr(node, "autostart", False):
        return True
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        return False
    return node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def run_node(node_class: type[Node], logger_name: str, args=None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logger = rclpy.logging.get_logger(logger_name)
    try:
        node = node_class()
        started = _autostart(node)
    except Exception as exc:  # e.g. a bad parameter value: nothing to serve
        logger.fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    if not started:
        logger.fatal("cannot start: configure failed (see the error above)")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0
