# SPDX-License-Identifier: Apache-2.0
"""Latency-model plugins: the interface the node codes against, and the loader.

The node asks a latency model, once per frame, what every skip level would
cost on the target (``predict_all``) and reports what the chosen level really
took (``observe``). Models are loaded by a short built-in name, a
``package.module:Class`` path, or an entry point in the group
``dynvit_ros.latency_models``. A plugin is called as ``Class(context)`` and
must return a :class:`LatencyModel` (or an object with the same three
methods).

Energy rides along with latency: ``predict`` may return a :class:`Prediction`,
a float (the milliseconds) that also carries the energy per frame in
millijoules. A plugin that returns a plain float predicts latency only; its
energy is unknown (:func:`energy_of` gives NaN) and energy budgets cannot be
enforced with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
import importlib
from importlib import metadata
import math
from typing import Sequence

from dynvit_ros.engine.model import SegFormer
from dynvit_ros.engine.skip import SkipConfig

ENTRY_POINT_GROUP = "dynvit_ros.latency_models"
BUILTIN: dict[str, str] = {
    "profiled": "dynvit_ros.latency.profiled:ProfiledLatencyModel",
    "accelerator": "dynvit_ros.latency.accelerator:AcceleratorLatencyModel",
}


class Prediction(float):
    """Predicted latency in ms (the float value) with the energy per frame in mJ (NaN: unknown).

    A float, so every caller that compares, scales or averages latencies keeps working.
    """

    __slots__ = ("energy_mj",)

    def __new__(cls, ms: float, energy_mj: float = math.nan) -> "Prediction":
        value = super().__new__(cls, ms)
        value.energy_mj = float(energy_mj)
        return value

    def __reduce__(self):
        return (Prediction, (float(self), self.energy_mj))


def energy_of(prediction) -> float:
    """The energy in mJ that ``prediction`` carries; NaN when it carries none or a bad one."""
    try:
        value = float(getattr(prediction, "energy_mj", math.nan))
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) and value >= 0 else math.nan


class LatencyModelError(RuntimeError):
    """A latency model could not be found, loaded or initialised."""


@dataclass
class LatencyContext:
    model: SegFormer  # provides .variant (VariantSpec) and .config.num_classes
    configs: list[SkipConfig]  # the skip levels, level 0 = full
    input_hw: tuple[int, int]  # the size the model runs at
    options: dict = field(
        default_factory=dict
    )  # plugin options (hardware, cache_dir, threads, ...)
    model_id: str = ""  # checkpoint identity for cache keys


class LatencyModel(ABC):
    """Predicts the latency in milliseconds of one forward pass per skip configuration.

    ``predict`` is on the node's per-frame path: implementations keep it to a
    dictionary lookup and a few multiplications (cache per config and size).
    Models that know the energy per frame return a :class:`Prediction`.
    """

    name: str = "latency-model"
    target: str = ""
    # Where energy predictions come from, for diagnostics ("none": latency only).
    energy_source: str = "none"
    # Whether frames measured by the node are samples of what ``predict`` predicts. The node
    # learns the tail of frame times over its median predictions only when they are.
    predicts_this_host: bool = True

    def __init__(self, context: LatencyContext):
        self.context = context

    @abstractmethod
    def predict(self, config: SkipConfig, input_hw: tuple[int, int]) -> float:
        """Predicted latency in ms of ``config`` at ``input_hw``.

        A :class:`Prediction` where the energy is known.
        """

    def observe(self, config: SkipConfig, input_hw: tuple[int, int], measured_ms: float) -> None:
        """Learn from one measured frame; models that cannot learn ignore it."""

    def predict_all(self, configs: Sequence[SkipConfig], input_hw: tuple[int, int]) -> list[float]:
        return [self.predict(config, tuple(input_hw)) for config in configs]


def _import_object(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LatencyModelError(
            f"latency model path {spec!r} must look like 'package.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken plugin module may raise anything at import time
        raise LatencyModelError(
            f"cannot import latency model module {module_name!r} ({spec}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LatencyModelError(
                f"module {module_name!r} has no attribute {attr!r} ({spec})"
            ) from None
    return obj


def _entry_points() -> dict:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution must not break built-in names
        return {}


def available_models() -> list[str]:
    """Built-in names plus names registered as entry points."""
    return sorted(set(BUILTIN) | set(_entry_points()))


def _resolve(name_or_spec: str):
    if name_or_spec in BUILTIN:
        return _import_object(BUILTIN[name_or_spec]), name_or_spec
    if ":" in name_or_spec:
        return _import_object(name_or_spec), name_or_spec
    entry = _entry_points().get(name_or_spec)
    if entry is None:
        raise LatencyModelError(
            f"unknown latency model {name_or_spec!r}; "
            f"known names: {', '.join(available_models())} "
            "(or give a 'package.module:Class' path)"
        )
    try:
        return entry.load(), f"{name_or_spec} (entry point {entry.value})"
    except Exception as exc:
        raise LatencyModelError(
            f"cannot load latency model entry point {name_or_spec!r} "
            f"({entry.value}): {type(exc).__name__}: {exc}"
        ) from exc


def load_latency_model(name_or_spec: str, context: LatencyContext) -> LatencyModel:
    """Build the latency model named ``name_or_spec`` for ``context``."""
    if not isinstance(name_or_spec, str) or not name_or_spec.strip():
        raise LatencyModelError(
            f"a latency model name must be a non-empty string, got {name_or_spec!r}"
        )
    factory, label = _resolve(name_or_spec.strip())
    if not callable(factory):
        raise LatencyModelError(f"latency model {label} is not a class or factory: {factory!r}")
    try:
        model = factory(context)
    except LatencyModelError:
        raise
    except Exception as exc:
        raise LatencyModelError(
            f"latency model {label} failed to initialise: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [
        m for m in ("predict", "observe", "predict_all") if not callable(getattr(model, m, None))
    ]
    if missing:
        raise LatencyModelError(
            f"latency model {label} returned {type(model).__name__}, which lacks "
            f"{', '.join(missing)}; subclass dynvit_ros.latency.base.LatencyModel"
        )
    return model
