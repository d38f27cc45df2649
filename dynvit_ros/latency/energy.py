# SPDX-License-Identifier: Apache-2.0
"""Energy constants of an accelerator description, and what one layer's energy is made of.

A frame's energy on the analytical accelerator (:mod:`dynvit_ros.latency.accelerator`) is

    E = sum over layers (compute + local + sram + dram) + static_w * predicted time

per layer, with ``b`` the bytes per element of the preset's precision:
- compute: MACs x ``mac_pj`` (GEMM kinds), or element-wise ops (``elementwise_ops`` of the
  kind x elements) x ``elementwise_op_pj``; fused element-wise layers still compute;
- local (register file / PE buffers): MACs x ``local_reads_per_mac`` x b, or an element-wise
  pass's inputs, parameters and outputs, x ``local_pj_per_byte``;
- sram (global buffer / L2): weights + inputs + outputs + re-streamed operands, every one
  crossing the global level once per layer, x ``sram_pj_per_byte``;
- dram: the bytes the latency model moves to and from DRAM x ``dram_pj_per_byte``.
Fused element-wise layers move nothing (their operands stay in the accumulators).

Units: pJ per layer term, mJ per frame (1 mJ = 1e9 pJ; W x ms = mJ). Pure, no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import math


@dataclass(frozen=True)
class EnergySpec:
    mac_pj: float  # one multiply-accumulate at the preset's precision
    elementwise_op_pj: float  # one vector-unit operation (norm, softmax, GELU, resize, add)
    local_pj_per_byte: float  # register file / PE-local buffer access
    local_reads_per_mac: float  # operand elements read from local storage per MAC (after reuse)
    sram_pj_per_byte: float  # global buffer / L2 access
    dram_pj_per_byte: float  # off-chip DRAM transfer
    static_w: float  # leakage and always-on power while a frame runs
    tdp_w: float  # datasheet thermal design power, for a sanity check (0: none published)

    @classmethod
    def from_dict(cls, data, source: str = "energy") -> "EnergySpec":
        """Every constant required, finite and >= 0; the error names the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: energy must be a mapping of constants, got {data!r}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{source}: unknown energy keys {unknown}; known: {names}")
        missing = [f"energy.{name}" for name in names if name not in data]
        if missing:
            raise ValueError(f"{source}: missing energy constants {missing}")
        values = {}
        for name in names:
            value = data[name]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"{source}: energy.{name} must be a finite number >= 0, got {value!r}"
                )
            values[name] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's energy in pJ, by where it is spent."""

    compute_pj: float = 0.0
    local_pj: float = 0.0
    sram_pj: float = 0.0
    dram_pj: float = 0.0

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.local_pj + self.sram_pj + self.dram_pj

    def terms(self) -> dict[str, float]:
        return {
            "compute": self.compute_pj,
            "local": self.local_pj,
            "sram": self.sram_pj,
            "dram": self.dram_pj,
        }


CATEGORIES = ("conv", "attention", "mlp", "decoder", "other")


def category(name: str, kind: str) -> str:
    """Where a layer of :func:`dynvit_ros.engine.macs.count_layers` belongs in the paper's
    breakdown: encoder convolutions (patch embeddings, attention's spatial reduction, Mix-FFN
    depthwise), the rest of self-attention, the rest of Mix-FFN, the decoder (with the output
    resize and argmax), other (encoder norms, the input resize).
    """
    if name.startswith(("decoder.", "output.")):
        return "decoder"
    if kind in ("conv", "dwconv"):
        return "conv"
    if ".attn." in name or name.endswith(".norm1"):
        return "attention"
    if ".ffn." in name or name.endswith(".norm2"):
        return "mlp"
    return "other"
