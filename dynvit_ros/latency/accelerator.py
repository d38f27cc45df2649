# SPDX-License-Identifier: Apache-2.0
"""Analytical per-layer latency model of a vector-MAC accelerator (or a GPU), described in YAML.

Each layer of the engine's per-layer list (:func:`dynvit_ros.engine.macs.count_layers`)
costs ``max(compute cycles, memory cycles)`` plus a fixed per-layer overhead;
the frame costs the sum plus a per-frame overhead.

Compute mapping (MAGNet-style, one formula for every preset):
- a PE does ``vector_lanes`` dot products of length ``vector_width`` per
  cycle; the vector runs along the reduction ``k``, the lanes and the PE
  columns along output channels ``n``, the PE rows along output positions
  ``m``. Every dimension is padded to its tile, so a dimension just above a
  multiple of the vector costs a whole extra vector (skipping a little work
  saves nothing until it crosses a boundary: wider vectors, coarser skips);
- ``reduction_vector: channels`` vectorises over input channels and runs the
  kernel taps in time (MAGNet). A depthwise conv then has one useful channel
  per vector: it uses ``1 / vector_width`` of the MACs. ``flat`` vectorises
  the im2col reduction (``k`` as one dimension), as GPU GEMM kernels do;
- depthwise groups share the lanes (each lane holds its own channel's taps);
  other grouped GEMMs (attention heads) run one after another.

Memory: weights, inputs and outputs move to/from DRAM once, unless the layer's
input or output fits the global buffer (it stays on chip between layers);
when neither the weights nor the inputs fit their buffers, the smaller
re-streaming order is charged. Element-wise kinds cost a vector-unit pass and
their traffic, or nothing when the hardware fuses them into the producer.

Energy (where the description has an ``energy`` section, see
:mod:`dynvit_ros.latency.energy`): per layer, the work and the bytes each memory
level moves times its energy per MAC, op or byte, plus static power times the
predicted frame time. A description without the section predicts latency only.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
import math
import os
from pathlib import Path

import numpy as np
import yaml

from dynvit_ros.engine.macs import GEMM_KINDS, LayerCost, OpKind, count_layers
from dynvit_ros.engine.model import scaled_size, stage_sizes
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency.base import LatencyContext, LatencyModel, LatencyModelError, Prediction
from dynvit_ros.latency.energy import EnergySpec, LayerEnergy, category
from dynvit_ros.share import data_dirs

_KINDS = {str(kind) for kind in OpKind}


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    target: str
    pe_rows: int  # PEs along output positions (m)
    pe_cols: int  # PEs along output channels (n)
    vector_width: int  # MACs of one vector unit per cycle, along the reduction (k)
    clock_ghz: float
    bytes_per_element: int
    dram_gbps: float
    weight_buffer_bytes: int  # on-chip weight storage, all PEs together
    input_buffer_bytes: int  # on-chip input-activation storage for tiling, all PEs together
    global_buffer_bytes: int  # keeps a layer's output on chip for the next layer if it fits
    vector_lanes: int = 1  # vector units per PE (each on its own output channel)
    reduction_vector: str = "flat"  # "channels" (kernel taps in time) or "flat" (im2col k)
    dram_efficiency: float = 1.0  # sustained / peak DRAM bandwidth
    efficiency: dict = field(default_factory=dict)  # per op kind, of padded peak (default 1)
    elementwise_lanes: int = 1  # element-wise results per PE per cycle
    elementwise_ops: dict = field(default_factory=dict)  # vector-unit ops per element, per kind
    fused_kinds: tuple = ()  # element-wise kinds folded into the producing layer: free
    layer_overhead_us: float = 0.0  # per executed layer (configuration, launch, dispatch)
    overhead_mode: str = "serial"  # "serial": added; "overlap": host dispatch hides device time
    frame_overhead_us: float = 0.0
    computation: str = "executed"  # which macs list runs there: "executed" or "reference"
    include_output: bool = True  # upsample logits to the input size and take the argmax
    notes: str = ""
    energy: EnergySpec | None = None  # None: latency only

    def __post_init__(self) -> None:
        for name in (
            "pe_rows",
            "pe_cols",
            "vector_width",
            "vector_lanes",
            "bytes_per_element",
            "elementwise_lanes",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{self.name}: {name} must be >= 1")
        for name in ("clock_ghz", "dram_gbps", "dram_efficiency"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{self.name}: {name} must be > 0")
        if self.reduction_vector not in ("channels", "flat"):
            raise ValueError(f"{self.name}: reduction_vector must be 'channels' or 'flat'")
        if self.overhead_mode not in ("serial", "overlap"):
            raise ValueError(f"{self.name}: overhead_mode must be 'serial' or 'overlap'")
        if self.computation not in ("executed", "reference"):
            raise ValueError(f"{self.name}: computation must be 'executed' or 'reference'")
        unknown = (
            set(self.efficiency) | set(self.elementwise_ops) | set(self.fused_kinds)
        ) - _KINDS
        if unknown:
            raise ValueError(
                f"{self.name}: unknown op kinds {sorted(unknown)}; known: {sorted(_KINDS)}"
            )
        if any(not 0 < float(v) <= 1 for v in self.efficiency.values()):
            raise ValueError(f"{self.name}: efficiencies must be in (0, 1]")
        object.__setattr__(self, "fused_kinds", tuple(self.fused_kinds))
        if self.energy is not None and not isinstance(self.energy, EnergySpec):
            object.__setattr__(self, "energy", EnergySpec.from_dict(self.energy, self.name))

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.num_pes * self.vector_lanes * self.vector_width

    @property
    def peak_tmacs(self) -> float:
        return self.peak_macs_per_cycle * self.clock_ghz / 1e3

    @classmethod
    def from_dict(cls, data: dict, source: str = "hardware") -> "HardwareSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{source}: unknown hardware keys {sorted(unknown)}")
        missing = [
            f.name
            for f in fields(cls)
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data
        ]
        if missing:
            raise ValueError(f"{source}: missing hardware keys {missing}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> "HardwareSpec":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read hardware description {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a hardware description is a YAML mapping")
        data.setdefault("name", path.stem)
        return cls.from_dict(data, str(path))


def preset_dirs() -> list[Path]:
    """Where preset names are looked up, first match wins."""
    env = os.environ.get("DYNVIT_ACCELERATOR_DIR")
    return ([Path(env)] if env else []) + data_dirs("config/accelerators")


def load_hardware(path_or_preset: str | Path) -> HardwareSpec:
    """A hardware description from a YAML path or a preset name such as ``gv100``."""
    path = Path(path_or_preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise LatencyModelError(f"hardware description not found: {path}")
        return _load_spec(path)
    for folder in preset_dirs():
        candidate = folder / f"{path_or_preset}.yaml"
        if candidate.exists():
            return _load_spec(candidate)
    known = sorted({p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise LatencyModelError(f"unknown accelerator preset {str(path_or_preset)!r}; known: {known}")


def _load_spec(path: Path) -> HardwareSpec:
    try:
        return HardwareSpec.load(path)
    except ValueError as exc:
        raise LatencyModelError(str(exc)) from exc


# ---------------------------------------------------------------------------
# The per-layer model
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTime:
    layer: LayerCost
    compute_us: float
    memory_us: float
    overhead_us: float
    total_us: float
    dram_bytes: int
    bound: str  # "compute", "memory", "overhead" or "fused"


def _ceil(a: float, b: float) -> int:
    return -(-int(a) // int(b))


def gemm_cycles(layer: LayerCost, hw: HardwareSpec) -> float:
    """Compute cycles of a GEMM-kind layer after padding every dimension to its tile."""
    groups, m, n, k = layer.groups, layer.m, layer.n, layer.k
    taps = 1
    if layer.kind in (OpKind.CONV, OpKind.DWCONV) and layer.in_shape:
        channels_per_group = max(1, layer.in_shape[0] // groups)
        taps = max(1, k // channels_per_group)
    if layer.kind == OpKind.DWCONV:
        n, serial = groups * n, 1
    else:
        serial = groups
    if hw.reduction_vector == "channels":
        k_steps = _ceil(k // taps, hw.vector_width) * taps
    else:
        k_steps = _ceil(k, hw.vector_width)
    cycles = serial * _ceil(m, hw.pe_rows) * _ceil(n, hw.pe_cols * hw.vector_lanes) * k_steps
    return cycles / float(hw.efficiency.get(str(layer.kind), 1.0))


def elementwise_cycles(layer: LayerCost, hw: HardwareSpec) -> float:
    ops = float(hw.elementwise_ops.get(str(layer.kind), 1.0)) * layer.elements
    return (
        ops / (hw.num_pes * hw.elementwise_lanes) / float(hw.efficiency.get(str(layer.kind), 1.0))
    )


def restream_bytes(layer: LayerCost, hw: HardwareSpec) -> int:
    """Operand bytes fetched again because neither the weights nor the inputs fit on chip."""
    w, i = layer.weight_bytes, layer.act_in_bytes
    if layer.kind in GEMM_KINDS and w > hw.weight_buffer_bytes and i > hw.input_buffer_bytes:
        restream_w = w * (_ceil(i, hw.input_buffer_bytes) - 1)
        restream_i = i * (_ceil(w, hw.weight_buffer_bytes) - 1)
        return min(restream_w, restream_i)
    return 0


def dram_bytes(layer: LayerCost, hw: HardwareSpec) -> int:
    w, i, o = layer.weight_bytes, layer.act_in_bytes, layer.act_out_bytes
    moved = w
    if i > hw.global_buffer_bytes:
        moved += i
    if o > hw.global_buffer_bytes:
        moved += o
    return moved + restream_bytes(layer, hw)


def layer_time(layer: LayerCost, hw: HardwareSpec) -> LayerTime:
    if layer.kind not in GEMM_KINDS and str(layer.kind) in hw.fused_kinds:
        return LayerTime(layer, 0.0, 0.0, 0.0, 0.0, 0, "fused")
    cycles = gemm_cycles(layer, hw) if layer.kind in GEMM_KINDS else elementwise_cycles(layer, hw)
    compute_us = cycles / (hw.clock_ghz * 1e3)
    moved = dram_bytes(layer, hw)
    memory_us = moved / (hw.dram_gbps * hw.dram_efficiency * 1e3)
    device_us = max(compute_us, memory_us)
    overhead = hw.layer_overhead_us
    if hw.overhead_mode == "overlap":
        total = max(device_us, overhead)
    else:
        total = device_us + overhead
    bound = (
        "overhead"
        if total > 0 and overhead >= device_us and hw.overhead_mode == "overlap"
        else ("compute" if compute_us >= memory_us else "memory")
    )
    return LayerTime(layer, compute_us, memory_us, overhead, total, moved, bound)


def local_bytes(layer: LayerCost, hw: HardwareSpec) -> float:
    """Bytes read from or written to register files / PE buffers (see EnergySpec)."""
    if layer.kind in GEMM_KINDS:
        return layer.macs * hw.energy.local_reads_per_mac * layer.bytes_per_element
    if str(layer.kind) in hw.fused_kinds:
        return 0.0
    return layer.weight_bytes + layer.act_in_bytes + layer.act_out_bytes


def sram_bytes(layer: LayerCost, hw: HardwareSpec) -> int:
    """Bytes through the global buffer / L2: every operand once, plus re-streamed ones."""
    if layer.kind not in GEMM_KINDS and str(layer.kind) in hw.fused_kinds:
        return 0
    moved = layer.weight_bytes + layer.act_in_bytes + layer.act_out_bytes
    return moved + restream_bytes(layer, hw)


def layer_energy(lt: LayerTime, hw: HardwareSpec) -> LayerEnergy:
    """Energy of one layer in pJ (``hw.energy`` must be set); ``lt`` gives its DRAM bytes."""
    e, layer = hw.energy, lt.layer
    if layer.kind in GEMM_KINDS:
        compute = layer.macs * e.mac_pj
    else:
        ops = float(hw.elementwise_ops.get(str(layer.kind), 1.0)) * layer.elements
        compute = ops * e.elementwise_op_pj
    return LayerEnergy(
        compute_pj=compute,
        local_pj=local_bytes(layer, hw) * e.local_pj_per_byte,
        sram_pj=sram_bytes(layer, hw) * e.sram_pj_per_byte,
        dram_pj=lt.dram_bytes * e.dram_pj_per_byte,
    )


def output_layers(
    num_classes: int, logits_hw: tuple[int, int], input_hw: tuple[int, int], bytes_per_element: int
) -> list[LayerCost]:
    """What ``SegFormer.predict`` adds after the logits: upsample to the input size, then
    argmax.
    """
    out = num_classes * input_hw[0] * input_hw[1]
    layers = []
    if tuple(logits_hw) != tuple(input_hw):
        layers.append(
            LayerCost(
                "output.resize",
                OpKind.RESIZE,
                elements=out,
                act_in_elems=num_classes * logits_hw[0] * logits_hw[1],
                act_out_elems=out,
                bytes_per_element=bytes_per_element,
            )
        )
    # The argmax is a compare per element; ADD is the closest element-wise kind the counter has.
    layers.append(
        LayerCost(
            "output.argmax",
            OpKind.ADD,
            elements=out,
            act_in_elems=out,
            act_out_elems=input_hw[0] * input_hw[1],
            bytes_per_element=bytes_per_element,
        )
    )
    return layers


@dataclass(frozen=True)
class Estimate:
    total_ms: float
    frame_overhead_us: float
    layers: tuple[LayerTime, ...]
    energies: tuple[LayerEnergy, ...] = ()  # per layer, empty without an energy section
    static_mj: float = math.nan  # static power x total_ms

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for lt in self.layers:
            out[str(lt.layer.kind)] = out.get(str(lt.layer.kind), 0.0) + lt.total_us / 1e3
        return out

    @property
    def energy_mj(self) -> float:
        """Energy per frame in mJ; NaN when the hardware has no energy constants."""
        if not self.energies:
            return math.nan
        return sum(e.total_pj for e in self.energies) / 1e9 + self.static_mj

    def energy_by_term(self) -> dict[str, float]:
        """Energy in mJ spent in compute, local buffers, global SRAM, DRAM and static power."""
        out = {"compute": 0.0, "local": 0.0, "sram": 0.0, "dram": 0.0}
        for energy in self.energies:
            for term, pj in energy.terms().items():
                out[term] += pj / 1e9
        out["static"] = self.static_mj
        return out

    def energy_by_category(self) -> dict[str, float]:
        """Energy in mJ per part of the network (:func:`dynvit_ros.latency.energy.category`);
        static energy is shared out by each layer's share of the time.
        """
        out: dict[str, float] = {}
        busy_us = sum(lt.total_us for lt in self.layers) or 1.0
        for lt, energy in zip(self.layers, self.energies):
            key = category(lt.layer.name, str(lt.layer.kind))
            static = self.static_mj * lt.total_us / busy_us
            out[key] = out.get(key, 0.0) + energy.total_pj / 1e9 + static
        return out


def estimate(
    model_spec, num_classes: int, input_hw: tuple[int, int], config: SkipConfig, hw: HardwareSpec
) -> Estimate:
    """Latency estimate of one forward pass of ``config`` at ``input_hw`` on ``hw``."""
    layers = count_layers(
        model_spec,
        num_classes,
        input_hw,
        config,
        executed=hw.computation == "executed",
        bytes_per_element=hw.bytes_per_element,
    )
    if hw.include_output:
        scaled = scaled_size(*input_hw, config.input_scale)
        logits_hw = stage_sizes(*scaled, model_spec)[config.fuse_level]
        layers = layers + output_layers(num_classes, logits_hw, input_hw, hw.bytes_per_element)
    times = tuple(layer_time(layer, hw) for layer in layers)
    total_us = hw.frame_overhead_us + sum(t.total_us for t in times)
    if hw.energy is None:
        return Estimate(total_us / 1e3, hw.frame_overhead_us, times)
    energies = tuple(layer_energy(lt, hw) for lt in times)
    static_mj = hw.energy.static_w * total_us / 1e3
    return Estimate(total_us / 1e3, hw.frame_overhead_us, times, energies, static_mj)


def fit_overheads(points, hw: HardwareSpec) -> tuple[float, float]:
    """Least-squares ``(layer_overhead_us, frame_overhead_us)`` for ``hw`` from measured frames.

    ``points``: ``(model_spec, num_classes, input_hw, measured_ms)`` of the full
    model. Device time does not depend on the overheads, so the total is linear
    in them and the relative error has a closed-form fit; both are kept >= 0.
    """
    if hw.overhead_mode != "serial":
        raise ValueError("fit_overheads models serial overheads only")
    bare = replace(hw, layer_overhead_us=0.0, frame_overhead_us=0.0)
    rows, targets = [], []
    for spec, classes, input_hw, measured_ms in points:
        est = estimate(spec, classes, tuple(input_hw), FULL, bare)
        layers = sum(1 for lt in est.layers if lt.bound != "fused")
        measured_us = measured_ms * 1e3
        rows.append((layers / measured_us, 1.0 / measured_us))
        targets.append(1.0 - est.total_ms * 1e3 / measured_us)
    a = np.asarray(rows)
    y = np.asarray(targets)
    solution = np.linalg.lstsq(a, y, rcond=None)[0]
    if solution.min() < 0:  # the better of the two one-parameter fits
        candidates = []
        for col in (0, 1):
            value = max(0.0, float(a[:, col] @ y / (a[:, col] @ a[:, col])))
            guess = np.zeros(2)
            guess[col] = value
            candidates.append((float(np.sum((a @ guess - y) ** 2)), guess))
        solution = min(candidates, key=lambda c: c[0])[1]
    return float(solution[0]), float(solution[1])


class AcceleratorLatencyModel(LatencyModel):
    """Analytical latency and energy on the hardware named by the ``hardware`` option (a path or
    a preset).

    Options: ``hardware`` (default ``magnet_5nm``); ``computation`` and
    ``include_output`` override the preset's. ``observe`` learns nothing by
    default, since frames measured on this host say nothing about the modelled
    hardware; with ``online_correction: true`` (the model really runs there)
    a shared ratio EWMA (``correction_alpha``, default 0.3) scales every level's
    latency (the energy prediction stays the analytical one).
    ``predict`` returns a :class:`Prediction` carrying the energy per frame.
    """

    name = "accelerator"

    def __init__(self, context: LatencyContext):
        super().__init__(context)
        options = context.options or {}
        hw = load_hardware(options.get("hardware", "magnet_5nm"))
        overrides = {k: options[k] for k in ("computation", "include_output") if k in options}
        self.hardware = replace(hw, **overrides) if overrides else hw
        self.target = self.hardware.target or self.hardware.name
        self.energy_source = (
            f"modelled ({self.hardware.name} energy constants)"
            if self.hardware.energy is not None
            else f"none: {self.hardware.name} has no energy section"
        )
        self._spec = context.model.variant
        self._classes = context.model.config.num_classes
        self._cache: dict[tuple[SkipConfig, tuple[int, int]], tuple[float, float]] = {}
        self._correct = bool(options.get("online_correction", False))
        # Frames measured here say something about the prediction only if the model runs there.
        self.predicts_this_host = self._correct
        self._alpha = float(options.get("correction_alpha", 0.3))
        self._log_ratio = 0.0
        for config in context.configs:  # the levels are known up front: pay for the layer walk now
            self.predict(config, tuple(context.input_hw))

    def estimate(self, config: SkipConfig, input_hw: tuple[int, int]) -> Estimate:
        return estimate(self._spec, self._classes, tuple(input_hw), config, self.hardware)

    def predict(self, config: SkipConfig, input_hw: tuple[int, int]) -> Prediction:
        key = (config, (int(input_hw[0]), int(input_hw[1])))
        cached = self._cache.get(key)
        if cached is None:
            est = self.estimate(config, key[1])
            cached = self._cache[key] = (est.total_ms, est.energy_mj)
        base, energy = cached
        return Prediction(base * math.exp(self._log_ratio) if self._correct else base, energy)

    def observe(self, config: SkipConfig, input_hw: tuple[int, int], measured_ms: float) -> None:
        if not self._correct or not (measured_ms > 0 and math.isfinite(measured_ms)):
            return
        base = self.predict(config, input_hw) / math.exp(self._log_ratio)
        self._log_ratio += self._alpha * (math.log(measured_ms / base) - self._log_ratio)
