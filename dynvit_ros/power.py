# SPDX-License-Identifier: Apache-2.0
"""Measured power and energy where the hardware offers a sensor: NVML on NVIDIA GPUs, Linux
powercap (Intel/AMD RAPL) on CPUs. Where neither is readable, say so; never estimate.

- NVML: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded, Volta and
  newer) as the energy counter, ``nvmlDeviceGetPowerUsage`` (mW) as the power reading.
  Used only if ``pynvml`` (the ``nvidia-ml-py`` package) is importable: not a dependency.
- RAPL: ``/sys/class/powercap/intel-rapl:N/energy_uj`` (also AMD's, under the same name),
  the top-level package zones, a microjoule counter that wraps at ``max_energy_range_uj``.
  Often readable by root only since the 2020 side-channel fixes.

Pure Python, no ROS import.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path

NO_SENSOR = "no power sensor"
POWERCAP = Path("/sys/class/powercap")


def init_nvml():
    """The initialised ``pynvml`` module, or None (not installed, or no NVIDIA driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, or NVMLError from a host without the driver
        return None


@dataclass(frozen=True)
class RaplZone:
    name: str  # e.g. "package-0"
    energy_path: Path
    max_uj: int  # the counter wraps here


def rapl_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """Readable top-level RAPL zones (packages) under ``root``; sub-zones would double-count."""
    zones = []
    for folder in sorted(Path(root).glob("intel-rapl:*")):
        if folder.name.count(":") != 1:
            continue
        try:
            name = (folder / "name").read_text().strip()
            int((folder / "energy_uj").read_text())
            max_uj = int((folder / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        zones.append(RaplZone(name or folder.name, folder / "energy_uj", max_uj))
    return zones


class PowerMeter:
    """Energy counters and power readings of the sensors this host exposes.

    ``kinds`` chooses which to use ("nvml", "rapl"): the profiled latency model
    asks only for the sensor of the device it times. ``sensors`` is empty and
    ``describe()`` says "no power sensor" where none is readable.
    """

    def __init__(self, kinds=("nvml", "rapl"), nvml=None, powercap_root: Path = POWERCAP):
        self.nvml = (nvml if nvml is not None else init_nvml()) if "nvml" in kinds else None
        self._gpus = self._nvml_handles()
        self.rapl = rapl_zones(powercap_root) if "rapl" in kinds else []
        self._last: dict[str, tuple[float, float]] = {}  # sensor -> (counter mJ, time s)
        self._rapl_offset: dict[str, float] = {}  # mJ added per wrap
        self._rapl_raw: dict[str, int] = {}

    def _nvml_handles(self) -> list:
        if self.nvml is None:
            return []
        try:
            count = self.nvml.nvmlDeviceGetCount()
            return [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # a driver hiccup: no GPU sensor
            return []

    @property
    def sensors(self) -> list[str]:
        return [f"gpu{i}" for i in range(len(self._gpus))] + [f"rapl/{z.name}" for z in self.rapl]

    def describe(self) -> str:
        if not self.sensors:
            return f"{NO_SENSOR} (no NVML GPU; no readable powercap/RAPL zone)"
        parts = []
        if self._gpus:
            parts.append(f"NVML: {len(self._gpus)} GPU(s)")
        if self.rapl:
            parts.append(f"RAPL: {', '.join(z.name for z in self.rapl)}")
        return "; ".join(parts)

    def energy_mj(self) -> dict[str, float]:
        """Cumulative energy per sensor in mJ (differences are what matter); unreadable
        sensors are left out.
        """
        out = {}
        for i, handle in enumerate(self._gpus):
            try:
                out[f"gpu{i}"] = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            except Exception:  # pre-Volta GPUs have no energy counter
                continue
        for zone in self.rapl:
            try:
                raw = int(zone.energy_path.read_text())
            except (OSError, ValueError):
                continue
            key = f"rapl/{zone.name}"
            previous = self._rapl_raw.get(key)
            if previous is not None and raw < previous:  # wrapped since the last read
                self._rapl_offset[key] = self._rapl_offset.get(key, 0.0) + zone.max_uj / 1e3
            self._rapl_raw[key] = raw
            out[key] = raw / 1e3 + self._rapl_offset.get(key, 0.0)
        return out

    def total_energy_mj(self) -> float:
        """Sum of all counters in mJ; NaN without a sensor."""
        values = self.energy_mj()
        return sum(values.values()) if values else math.nan

    def power_w(self, now: float) -> dict[str, float]:
        """Mean power per sensor in W since the previous call (first call: NVML's instant
        reading only). ``now`` in seconds, monotonic.
        """
        out = {}
        for key, energy in self.energy_mj().items():
            last = self._last.get(key)
            self._last[key] = (energy, now)
            if last is not None and now > last[1]:
                out[key] = (energy - last[0]) / (now - last[1]) / 1e3
        for i, handle in enumerate(self._gpus):
            key = f"gpu{i}"
            if key not in out:
                try:
                    out[key] = self.nvml.nvmlDeviceGetPowerUsage(handle) / 1e3
                except Exception:  # no power reading on this board
                    continue
        return out
