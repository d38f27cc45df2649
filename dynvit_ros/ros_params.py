"""Parameter and diagnostics helpers shared by the package's nodes.

Every parameter is declared with a descriptor (description, range, read-only
where a change would need a restart) and checked again in the node's
set-parameters callback, which returns the reason when it refuses a value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data, qos_profile_system_default
from rclpy.qos import HistoryPolicy, ReliabilityPolicy


@dataclass(frozen=True)
class Spec:
    """One parameter: default, description and the checks the callback applies."""

    default: Any
    description: str
    read_only: bool = False
    low: float | int | None = None
    high: float | int | None = None
    choices: Sequence[str] = ()
    check: Callable[[Any], str | None] | None = None   # returns a reason to refuse, or None

    def descriptor(self, name: str) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=name, description=self.description, read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = f"one of: {', '.join(self.choices)}"
        if self.low is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc

    def refuse(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if isinstance(self.default, float) and isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        if self.low is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not self.low <= value <= self.high:
                return f"must be in [{self.low}, {self.high}]; got {value}"
        return self.check(value) if self.check else None


def declare_all(node: Node, specs: dict[str, Spec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return their values (overrides applied and checked)."""
    values = {}
    for name, spec in specs.items():
        value = node.declare_parameter(name, spec.default, spec.descriptor(name)).value
        reason = spec.refuse(value)
        if reason:
            raise ValueError(f"parameter {name}: {reason}")
        values[name] = value
    return values


def check_changes(specs: dict[str, Spec], params: list[Parameter]) -> SetParametersResult:
    """The set-parameters callback's verdict for a batch of changes."""
    for param in params:
        spec = specs.get(param.name)
        if spec is None:
            continue
        reason = spec.refuse(param.value)
        if reason:
            return SetParametersResult(successful=False, reason=f"{param.name}: {reason}")
    return SetParametersResult(successful=True)


QOS_CHOICES = ("sensor_data", "reliable", "system_default")


def input_qos(name: str) -> QoSProfile:
    """Subscription QoS for images: always depth 1, since only the newest frame matters."""
    base = {"sensor_data": qos_profile_sensor_data, "system_default": qos_profile_system_default,
            "reliable": QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)}[name]
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=base.reliability,
                      durability=base.durability)


def status(name: str, level: bytes, message: str, hardware_id: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=_text(v)) for k, v in values.items()])


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def spin_node(node_class: type[Node], logger_name: str, args=None) -> int:
    """The body of a node's ``main``: construct (a failure is fatal, exit 1), spin, shut down."""
    rclpy.init(args=args)
    try:
        node = node_class()
    except Exception as exc:  # e.g. the model or the latency model did not load: nothing to serve
        rclpy.logging.get_logger(logger_name).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
