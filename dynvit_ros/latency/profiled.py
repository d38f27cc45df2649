# SPDX-License-Identifier: Apache-2.0
"""Latency of each skip level measured on this host, corrected online from every frame.

Calibration times every level here: ``warmup`` untimed runs per level, then
``repeats`` round-robin rounds over all levels (so slow drifts of a shared
host hit every level alike), and keeps the median per level. The table is
cached as JSON, keyed by model id, variant, class count, input size, thread
count, torch version, CPU model, what is timed, the allocator settings
(``host.tune_allocator``), the backend that runs the forward pass (name,
version, its threads) and the configurations; any difference in the key means
recalibration. The backend timed is the one the runtime uses (option
``backend``: a :mod:`dynvit_ros.engine.backends` object; default eager torch).

Online estimator. The prediction for configuration ``c`` is
``base(c) * rho_c * lam``:
- ``base(c)``: the calibrated median;
- ``lam``, a load factor shared by all levels: an EWMA in the log domain
  (``load_alpha``, default 0.5) of each frame's ratio
  ``measured / (base(c) * rho_c)``, with the per-frame innovation clamped to
  ``load_clip`` (default 0.5 in log, so one outlier frame moves ``lam`` by at
  most 28%). Every frame, whichever level ran, updates it, so a CPU load step
  moves all levels' predictions: a 2x step is tracked within 10% after four
  frames. On a busy 2-core host this responsive filter beat a median of the
  last 5 ratios (robust but ~3 frames late) on recorded traces;
- ``rho_c``, a per-level ratio: an EWMA (``level_alpha``, default 0.1) of the
  log residual left after ``lam``, each step clamped to ``level_step``
  (default 0.02, i.e. 2%) so that the frames of a load step, which the
  shared factor explains, barely disturb it. It absorbs what calibration in
  isolation misses for one level (e.g. cache state when levels alternate).

Energy, where the device that runs the model has a power sensor
(:class:`dynvit_ros.power.PowerMeter`: RAPL for the CPU, NVML for a CUDA device):
calibration also reads the energy counter around every timed run and keeps the
mean per level; predictions of calibrated levels then carry it. RAPL counts the
whole package (other processes included). The figures are cached with the
times; a cache written without a sensor keeps no energy (``recalibrate: true``
measures it). Without a sensor no energy is predicted, and ``energy_source``
says so.

Configurations or input sizes that were not calibrated are predicted from a
calibrated neighbour, scaled by an affine fit of time on executed MACs over
the calibrated levels: ``base(u) = base(n) * f(macs(u)) / f(macs(n))`` with
``f(x) = a + b*x`` and ``n`` the level whose ``f`` is closest. Set
``unknown: error`` to raise instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
import statistics
import time

import torch
import torch.nn.functional as F

from dynvit_ros.engine.backends import TorchBackend
from dynvit_ros.engine.macs import count_layers, total_macs
from dynvit_ros.engine.masks import logits_to_masks
from dynvit_ros.engine.model import scaled_size
from dynvit_ros.engine.skip import SkipConfig
from dynvit_ros.host import allocator_settings, cpu_model
from dynvit_ros.latency.base import LatencyContext, LatencyModel, LatencyModelError, Prediction
from dynvit_ros.power import PowerMeter

CACHE_FORMAT = 1
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dynvit_ros" / "latency"


class ProfiledLatencyModel(LatencyModel):
    """Options: ``backend`` (the runtime's backend object; default eager torch),
    ``threads``, ``warmup`` (3), ``repeats`` (10), ``call`` ("predict" or "forward"),
    ``upsample`` ("logits" or "mask", as the node's mask_upsampling), ``frame_hw`` ([h, w] of the
    camera frames when they differ from the model's input size),
    ``cache_dir`` / ``cache_file``, ``recalibrate``, ``progress`` (True), ``load_alpha`` (0.5),
    ``load_clip`` (0.5), ``level_alpha`` (0.1), ``level_step`` (0.02), ``unknown`` ("scale" or
    "error"), ``power_meter`` (an object like :class:`dynvit_ros.power.PowerMeter`; default:
    the sensor of the device the model runs on).
    """

    name = "profiled"

    def __init__(self, context: LatencyContext):
        super().__init__(context)
        opts = dict(context.options or {})
        self.model = context.model
        # What runs the forward pass: the runtime passes its own, so that what is timed here
        # is what the node runs.
        self.backend = opts.get("backend") or TorchBackend(self.model)
        self.configs = list(context.configs)
        if not self.configs:
            raise LatencyModelError("the profiled latency model needs at least one configuration")
        self.input_hw = (int(context.input_hw[0]), int(context.input_hw[1]))
        self.threads = int(opts.get("threads") or torch.get_num_threads())
        self.warmup = int(opts.get("warmup", 3))
        self.repeats = max(1, int(opts.get("repeats", 10)))
        self.call = str(opts.get("call", "predict"))
        self.upsample = str(
            opts.get("upsample", "logits")
        )  # as the runtime turns logits into masks
        # Camera frame size, when it differs from the model's: then the resize in and the mask out
        # at that size are timed too, as SegmentationRuntime.infer runs them.
        self.frame_hw = tuple(int(v) for v in opts["frame_hw"]) if opts.get("frame_hw") else None
        if self.call not in ("predict", "forward"):
            raise LatencyModelError(
                f"profiled: call must be 'predict' or 'forward', got {self.call!r}"
            )
        self.progress = bool(opts.get("progress", True))
        self.unknown = str(opts.get("unknown", "scale"))
        self.load_alpha = float(opts.get("load_alpha", 0.5))
        self.load_clip = float(opts.get("load_clip", 0.5))
        self.level_alpha = float(opts.get("level_alpha", 0.1))
        self.level_step = float(opts.get("level_step", 0.02))
        backend = f"{self.backend.name} {self.backend.version}"
        self.target = f"this host: {cpu_model()}, {self.threads} threads, {backend}"
        self.cache_key = self._cache_key(context.model_id)
        if opts.get("cache_file"):
            self.cache_path = Path(opts["cache_file"])
        else:
            digest = hashlib.sha256(
                json.dumps(self.cache_key, sort_keys=True).encode()
            ).hexdigest()[:16]
            self.cache_path = (
                Path(opts.get("cache_dir") or default_cache_dir()) / f"profiled-{digest}.json"
            )
        self.meter = opts.get("power_meter") or PowerMeter(
            kinds=("nvml",) if self._device() == "cuda" else ("rapl",)
        )
        self.calibrated = False  # True when this instance measured rather than read the cache
        self._energy_mj: list[float] | None = None  # mean per level, where measured
        medians = None if opts.get("recalibrate") else self._read_cache()
        if medians is None:
            medians, samples = self.calibrate()
            self._write_cache(medians, samples)
            self.calibrated = True
        self.table: dict[SkipConfig, float] = dict(zip(self.configs, medians))
        self.energy: dict[SkipConfig, float] = dict(zip(self.configs, self._energy_mj or []))
        if self.energy:
            self.energy_source = f"measured ({self.meter.describe()})"
        elif self.meter.sensors:
            self.energy_source = "none: the cached calibration has none (recalibrate: true)"
        else:
            self.energy_source = f"none: {self.meter.describe()}"
        self._macs: dict[tuple[SkipConfig, tuple[int, int]], int] = {}
        self._fit = self._fit_affine()
        self._base: dict[tuple[SkipConfig, tuple[int, int]], float] = {
            (c, self.input_hw): t for c, t in self.table.items()
        }
        self.reset()

    # -- calibration ------------------------------------------------------
    def _device(self) -> str:
        model = getattr(self.backend, "model", None) or self.model
        try:
            return next(model.parameters()).device.type
        except (AttributeError, StopIteration, TypeError):
            return "cpu"

    def _cache_key(self, model_id: str) -> dict:
        return {
            "format": CACHE_FORMAT,
            "model_id": model_id,
            "variant": self.model.variant.name,
            "num_classes": self.model.config.num_classes,
            "input_hw": list(self.input_hw),
            "threads": self.threads,
            "torch": torch.__version__,
            "cpu": cpu_model(),
            "call": self.call,
            "upsample": self.upsample,
            "frame_hw": list(self.frame_hw or ()),
            "allocator": allocator_settings(),
            "backend": self.backend.describe(),
            "configs": [c.key() for c in self.configs],
            "encoder_hw": [list(scaled_size(*self.input_hw, c.input_scale)) for c in self.configs],
        }

    def _read_cache(self) -> list[float] | None:
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != self.cache_key:
            log.info("latency cache %s is stale or foreign: recalibrating", self.cache_path)
            return None
        medians = data.get("median_ms")
        if (
            not isinstance(medians, list)
            or len(medians) != len(self.configs)
            or not all(isinstance(t, (int, float)) and t > 0 for t in medians)
        ):
            return None
        energy = data.get("energy_mj")
        if isinstance(energy, list) and len(energy) == len(self.configs):
            if all(isinstance(e, (int, float)) and e >= 0 for e in energy):
                self._energy_mj = [float(e) for e in energy]
        return [float(t) for t in medians]

    def _write_cache(self, medians: list[float], samples: list[list[float]]) -> None:
        data = {
            "key": self.cache_key,
            "median_ms": medians,
            "samples_ms": samples,
            "names": [c.name for c in self.configs],
            "energy_mj": self._energy_mj,
            "energy_source": self.meter.describe(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.cache_path)
        except OSError as exc:
            log.warning("cannot write latency cache %s: %s", self.cache_path, exc)

    def measure(self, config: SkipConfig, input_hw: tuple[int, int]) -> float:
        """One timed run of ``config`` in ms (tests replace this)."""
        images = self._images(input_hw)
        frame = self._images(self.frame_hw) if self.frame_hw and self.call == "predict" else None
        with torch.inference_mode():
            start = time.perf_counter()
            if frame is not None:
                resized = F.interpolate(frame, size=input_hw, mode="bilinear", align_corners=False)
                logits_to_masks(
                    self.backend.forward(resized, config), self.frame_hw, self.upsample
                )
            elif self.call == "predict":
                logits_to_masks(self.backend.forward(images, config), input_hw, self.upsample)
            else:
                self.backend.forward(images, config)
            return (time.perf_counter() - start) * 1e3

    def _images(self, input_hw: tuple[int, int]) -> torch.Tensor:
        cached = getattr(self, "_image_cache", None)
        if cached is None or tuple(cached.shape[-2:]) != tuple(input_hw):
            generator = torch.Generator().manual_seed(0)
            cached = self._image_cache = torch.randn(1, 3, *input_hw, generator=generator)
        return cached

    def calibrate(self) -> tuple[list[float], list[list[float]]]:
        """Median ms per configuration at the context's input size, with a progress bar."""
        from tqdm import tqdm

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        was_training = self.model.training
        self.model.eval()
        samples: list[list[float]] = [[] for _ in self.configs]
        energy: list[list[float]] = [[] for _ in self.configs]
        metered = bool(self.meter.sensors)
        total = len(self.configs) * (self.warmup + self.repeats)
        try:
            with tqdm(
                total=total,
                desc=f"calibrating {len(self.configs)} levels",
                unit="run",
                disable=not self.progress,
                leave=False,
            ) as bar:
                for config in self.configs:
                    for _ in range(self.warmup):
                        self.measure(config, self.input_hw)
                        bar.update()
                for _ in range(self.repeats):
                    for i, config in enumerate(self.configs):
                        before = self.meter.total_energy_mj() if metered else math.nan
                        samples[i].append(float(self.measure(config, self.input_hw)))
                        if metered:
                            energy[i].append(self.meter.total_energy_mj() - before)
                        bar.update()
        finally:
            torch.set_num_threads(previous)
            self.model.train(was_training)
        medians = [statistics.median(s) for s in samples]
        if not all(t > 0 and math.isfinite(t) for t in medians):
            raise LatencyModelError(f"calibration produced invalid times: {medians}")
        # The mean, not the median: counters tick coarser than a frame (RAPL ~1 ms, NVML
        # slower), so single runs read 0 or a whole tick; their mean is unbiased.
        means = [statistics.fmean(e) for e in energy] if metered else []
        usable = means and all(math.isfinite(e) and e >= 0 for e in means)
        self._energy_mj = means if usable else None
        return medians, samples

    # -- unknown configurations ---------------------------------------------
    def executed_macs(self, config: SkipConfig, input_hw: tuple[int, int]) -> int:
        key = (config, input_hw)
        if key not in self._macs:
            self._macs[key] = total_macs(
                count_layers(
                    self.model.variant,
                    self.model.config.num_classes,
                    input_hw,
                    config,
                    executed=True,
                )
            )
        return self._macs[key]

    def _fit_affine(self) -> tuple[float, float]:
        """Least-squares ``ms = a + b * macs`` over the calibrated levels (a >= 0, b > 0)."""
        xs = [float(self.executed_macs(c, self.input_hw)) for c in self.configs]
        ys = [self.table[c] for c in self.configs]
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mean_x) ** 2 for x in xs)
        if var > 0:
            b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var
            a = mean_y - b * mean_x
            if b > 0 and a >= 0:
                return a, b
        return 0.0, mean_y / max(mean_x, 1.0)  # proportional to MACs

    def base(self, config: SkipConfig, input_hw: tuple[int, int]) -> float:
        """Calibrated (or neighbour-scaled) latency without online correction."""
        key = (config, input_hw)
        value = self._base.get(key)
        if value is not None:
            return value
        if self.unknown == "error":
            raise LatencyModelError(
                f"profiled: configuration {config.name!r} at {input_hw} was not calibrated "
                f"(calibrated: {len(self.configs)} levels at {self.input_hw})"
            )
        a, b = self._fit
        f_u = a + b * self.executed_macs(config, input_hw)
        neighbour = min(
            self.configs,
            key=lambda c: abs(math.log(f_u / (a + b * self.executed_macs(c, self.input_hw)))),
        )
        value = (
            self.table[neighbour] * f_u / (a + b * self.executed_macs(neighbour, self.input_hw))
        )
        self._base[key] = value
        return value

    # -- the per-frame interface ----------------------------------------------
    def reset(self) -> None:
        """Forget the online corrections (calibration is kept)."""
        self.load_factor = 1.0
        self._log_load = 0.0
        self._level: dict[tuple[SkipConfig, tuple[int, int]], float] = {}

    def predict(self, config: SkipConfig, input_hw: tuple[int, int]) -> float:
        key = (config, (int(input_hw[0]), int(input_hw[1])))
        base = self._base.get(key)
        if base is None:
            base = self.base(*key)
        ms = base * self._level.get(key, 1.0) * self.load_factor
        energy = self.energy.get(config) if key[1] == self.input_hw else None
        return ms if energy is None else Prediction(ms, energy)

    def observe(self, config: SkipConfig, input_hw: tuple[int, int], measured_ms: float) -> None:
        measured_ms = float(measured_ms)
        if not (measured_ms > 0 and math.isfinite(measured_ms)):
            return
        key = (config, (int(input_hw[0]), int(input_hw[1])))
        level_base = self.base(*key) * self._level.get(key, 1.0)
        innovation = math.log(measured_ms / level_base) - self._log_load
        self._log_load += self.load_alpha * max(-self.load_clip, min(self.load_clip, innovation))
        self.load_factor = math.exp(self._log_load)
        residual = math.log(measured_ms / (level_base * self.load_factor))
        step = max(-self.level_step, min(self.level_step, self.level_alpha * residual))
        self._level[key] = self._level.get(key, 1.0) * math.exp(step)
