# SPDX-License-Identifier: Apache-2.0
"""Diagnostics and error reporting shared by the nodes.

``ErrorLog`` is pure: it counts errors by kind, keeps the last one (quoted to
a bounded length) and decides which ones deserve a log line, so a flood of
bad input never floods the log or /diagnostics.
"""

from __future__ import annotations

import math
from typing import Any

QUOTE_LIMIT = 200


def quote(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """``text`` made printable and cut to ``limit`` characters: how input reaches logs."""
    text = str(text)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit * 4])
    if len(text) > limit:
        return f"{text[:limit]}... ({len(str(text))}+ chars)"
    return text


class ErrorLog:
    """Per-kind error counts with a rate limit on what gets logged.

    The first error of a kind is logged at once; later ones of the same kind
    at most every ``interval_s`` seconds, with how many were suppressed since.
    """

    def __init__(self, interval_s: float = 5.0):
        self.interval_s = float(interval_s)
        self.counts: dict[str, int] = {}
        self.last_error = ""
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, kind: str, text: str, now: float) -> str | None:
        """Count one error; return the line to log now, or None to stay quiet."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last_error = quote(text)
        if now - self._last_logged.get(kind, -math.inf) < self.interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last_logged[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} more of this kind suppressed)" if suppressed else ""
        return self.last_error + more

    @property
    def suppressed(self) -> int:
        return sum(self._suppressed.values())


def log_line(logger, line: tuple[str, str] | str | None) -> None:
    """Log ``(severity, text)`` (or plain text at info) from the pure layers' reports."""
    if not line:
        return
    severity, text = line if isinstance(line, tuple) else ("info", line)
    # Separate calls: rclpy ties one severity to each logging call site.
    if severity == "error":
        logger.error(text)
    elif severity == "warning":
        logger.warning(text)
    else:
        logger.info(text)


def text_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(text_value(v) for v in value)
    return quote(value, 1000)


def diagnostic_array(stamp, name: str, level: int, message: str, hardware_id: str, values: dict):
    """A DiagnosticArray with one status whose values are rendered as bounded text."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(
        level=bytes([level]) if isinstance(level, int) else level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=text_value(v)) for k, v in values.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


# DiagnosticStatus levels as ints (the message uses single bytes).
OK, WARN, ERROR = 0, 1, 2
