# SPDX-License-Identifier: Apache-2.0
"""Measured power: RAPL counters (a fake powercap tree), NVML (a fake module), no sensor at
all, and energy measured by the profiled latency model."""

import math

import pytest

from dynvit_ros.budget.system_load import SystemSampler
from dynvit_ros.engine.model import build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency.base import LatencyContext, energy_of
from dynvit_ros.latency.profiled import ProfiledLatencyModel
from dynvit_ros.power import NO_SENSOR, PowerMeter


def zone(root, name, index, energy_uj, max_uj=1_000_000, sub=False):
    folder = root / (f"intel-rapl:{index}:0" if sub else f"intel-rapl:{index}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(name + "\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def test_no_sensor_says_so_and_reports_no_figure(tmp_path):
    meter = PowerMeter(kinds=("rapl",), powercap_root=tmp_path)
    assert meter.sensors == [] and NO_SENSOR in meter.describe()
    assert meter.energy_mj() == {} and meter.power_w(1.0) == {}
    assert math.isnan(meter.total_energy_mj())


def test_rapl_packages_counted_sub_zones_skipped_wraparound_handled(tmp_path):
    pkg = zone(tmp_path, "package-0", 0, 900_000)
    zone(tmp_path, "core", 0, 5, sub=True)  # inside package-0: would double-count
    meter = PowerMeter(kinds=("rapl",), powercap_root=tmp_path)
    assert meter.sensors == ["rapl/package-0"] and "RAPL: package-0" in meter.describe()
    assert meter.power_w(10.0) == {}  # the first reading only starts the interval
    (pkg / "energy_uj").write_text("100000\n")  # wrapped at 1 J: 200 mJ later
    assert meter.power_w(10.5) == {"rapl/package-0": pytest.approx(0.2 / 0.5)}
    assert meter.energy_mj()["rapl/package-0"] == pytest.approx(1000.0 + 100.0)


def test_unreadable_rapl_is_no_sensor(tmp_path):
    folder = zone(tmp_path, "package-0", 0, 1)
    (folder / "energy_uj").unlink()  # as for a non-root user: the file is not readable
    assert PowerMeter(kinds=("rapl",), powercap_root=tmp_path).sensors == []


class FakeNvml:
    def __init__(self):
        self.energy = 5_000  # mJ

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"gpu{i}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy

    def nvmlDeviceGetPowerUsage(self, handle):
        return 71_500  # mW


def test_nvml_counter_and_instant_power(tmp_path):
    nvml = FakeNvml()
    meter = PowerMeter(kinds=("nvml",), nvml=nvml, powercap_root=tmp_path)
    assert meter.sensors == ["gpu0"] and "NVML: 1 GPU" in meter.describe()
    assert meter.power_w(0.0) == {"gpu0": pytest.approx(71.5)}  # instant reading first
    nvml.energy += 30_000
    assert meter.power_w(0.5) == {"gpu0": pytest.approx(60.0)}  # 30 J over 0.5 s


def test_load_monitor_sampler_reports_power_or_says_there_is_none():
    sample = SystemSampler().sample()
    if not SystemSampler().power.sensors:
        assert NO_SENSOR in sample["power_sensors"] and sample["power_w"] == {}
    else:
        assert all(v >= 0 for v in sample["power_w"].values())


class CountingMeter:
    """A power sensor whose counter advances by what the last timed run 'used'."""

    def __init__(self, sensors=("fake",)):
        self.sensors = list(sensors)
        self.counter = 0.0

    def describe(self):
        return "fake meter" if self.sensors else f"{NO_SENSOR} (fake)"

    def total_energy_mj(self):
        return self.counter if self.sensors else math.nan


LEVELS = [FULL, SkipConfig(name="half", input_scale=0.5)]
TRUE = {LEVELS[0]: (40.0, 9.0), LEVELS[1]: (12.0, 2.5)}  # ms, mJ


class Metered(ProfiledLatencyModel):
    def measure(self, config, input_hw):
        self.meter.counter += TRUE[config][1]
        return TRUE[config][0]


@pytest.fixture(scope="module")
def model():
    return build_segformer("b0", 19)


def profiled(model, tmp_path, meter, **opts):
    options = {"cache_dir": str(tmp_path), "warmup": 1, "repeats": 3, "progress": False}
    options.update(opts, power_meter=meter)
    return Metered(LatencyContext(model, LEVELS, (64, 96), options, model_id="m"))


def test_profiled_model_measures_energy_where_a_sensor_exists(model, tmp_path):
    first = profiled(model, tmp_path, CountingMeter())
    predictions = first.predict_all(LEVELS, (64, 96))
    assert [float(p) for p in predictions] == [40.0, 12.0]
    assert [energy_of(p) for p in predictions] == [pytest.approx(9.0), pytest.approx(2.5)]
    assert "measured (fake meter)" == first.energy_source
    cached = profiled(model, tmp_path, CountingMeter())  # from the cache, not re-measured
    assert not cached.calibrated and energy_of(cached.predict(FULL, (64, 96))) == 9.0
    assert math.isnan(energy_of(cached.predict(FULL, (32, 48))))  # not calibrated there


def test_profiled_model_without_a_sensor_predicts_latency_only(model, tmp_path):
    plain = profiled(model, tmp_path, CountingMeter(sensors=()))
    assert math.isnan(energy_of(plain.predict(FULL, (64, 96))))
    assert NO_SENSOR in plain.energy_source
