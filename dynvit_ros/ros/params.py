# SPDX-License-Identifier: Apache-2.0
"""Parameter declaration and validation shared by the package's nodes.

Every parameter is declared with a descriptor (description, range, read-only
where a change would need a restart) and checked again in the node's
set-parameters callback, which returns the reason when it refuses a value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Any, Callable, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Spec:
    """One parameter: default, description and the checks the callback applies."""

    default: Any
    description: str
    read_only: bool = False
    low: float | int | None = None
    high: float | int | None = None
    choices: Sequence[str] = ()
    check: Callable[[Any], str | None] | None = None  # returns a reason to refuse, or None

    def descriptor(self, name: str) -> ParameterDescriptor:
        desc = ParameterDescriptor(
            name=name, description=self.description, read_only=self.read_only
        )
        if self.choices:
            desc.additional_constraints = f"one of: {', '.join(self.choices)}"
        if self.low is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                desc.integer_range = [
                    IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)
                ]
            elif isinstance(self.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(self.low), to_value=float(self.high), step=0.0
                    )
                ]
        return desc

    def with_range(self, low: float | int, high: float | int) -> "Spec":
        return replace(self, low=low, high=high)

    def refuse(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if (
            isinstance(self.default, float)
            and isinstance(value, float)
            and not math.isfinite(value)
        ):
            return f"must be a finite number, got {value}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        if (
            self.low is not None
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
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


class NamedParameterErrors:
    """Node mixin: a set request for a parameter the node does not have is refused with its name.

    rclpy's own refusal reads "Invalid access to undeclared parameter(s): []".
    """

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        unknown = [p.name for p in parameter_list if not self.has_parameter(p.name)]
        if unknown:
            names = ", ".join(repr(name[:64]) for name in unknown)
            return SetParametersResult(
                successful=False,
                reason=f"{self.get_name()} has no parameter {names} (`ros2 param list` shows its "
                "parameters)",
            )
        return super().set_parameters_atomically(parameter_list)
