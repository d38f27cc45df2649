# SPDX-License-Identifier: Apache-2.0
"""Energy on the analytical accelerator: units, a layer computed by hand, the presets, refusal
of incomplete constants, and energy riding along with latency predictions."""

from dataclasses import replace
import math
import pickle

import pytest
from test_latency_accelerator import chip as latency_chip
from test_latency_accelerator import linear
import yaml

from dynvit_ros.engine.macs import LayerCost, OpKind
from dynvit_ros.engine.model import VARIANTS, build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency.accelerator import (
    AcceleratorLatencyModel,
    HardwareSpec,
    estimate,
    layer_energy,
    layer_time,
    load_hardware,
    preset_dirs,
)
from dynvit_ros.latency.base import (
    LatencyContext,
    LatencyModelError,
    Prediction,
    energy_of,
)
from dynvit_ros.latency.energy import CATEGORIES, EnergySpec, category

PRESETS = ("magnet_5nm", "gv100", "jetson_orin")
ENERGY = {
    "mac_pj": 1.0,
    "elementwise_op_pj": 0.25,
    "local_pj_per_byte": 0.5,
    "local_reads_per_mac": 2.0,
    "sram_pj_per_byte": 2.0,
    "dram_pj_per_byte": 10.0,
    "static_w": 1.0,
    "tdp_w": 0.0,
}


def chip(**changes) -> HardwareSpec:
    """The toy chip of test_latency_accelerator.py with round energy constants."""
    changes = {
        "elementwise_ops": {"norm": 8},
        "fused_kinds": ("act",),
        "energy": dict(ENERGY),
        **changes,
    }
    return latency_chip(**changes)


def elementwise(kind, elements=1000) -> LayerCost:
    return LayerCost(
        "x",
        kind,
        elements=elements,
        weight_elems=16,
        act_in_elems=elements,
        act_out_elems=elements,
        bytes_per_element=1,
    )


def test_a_linear_layer_by_hand():
    hw = chip()
    layer = linear()  # 64 x 64 x 64 = 262,144 MACs; weights, inputs, outputs 4096 B each
    energy = layer_energy(layer_time(layer, hw), hw)
    assert energy.compute_pj == pytest.approx(262_144 * 1.0)
    assert energy.local_pj == pytest.approx(262_144 * 2.0 * 1 * 0.5)  # 2 reads/MAC x 1 B
    assert energy.sram_pj == pytest.approx(3 * 4096 * 2.0)  # every operand once
    # Everything fits the global buffer: only the weights come from DRAM.
    assert energy.dram_pj == pytest.approx(4096 * 10.0)
    assert energy.total_pj == pytest.approx(262_144 + 262_144 + 24_576 + 40_960)


def test_a_spilled_layer_pays_dram_for_its_activations():
    hw = chip(global_buffer_bytes=0)
    energy = layer_energy(layer_time(linear(), hw), hw)
    assert energy.dram_pj == pytest.approx(3 * 4096 * 10.0)


def test_element_wise_layers_by_hand_and_fused_ones_move_nothing():
    hw = chip()
    norm = layer_energy(layer_time(elementwise(OpKind.NORM), hw), hw)
    assert norm.compute_pj == pytest.approx(8 * 1000 * 0.25)  # 8 ops per element
    assert norm.local_pj == pytest.approx((1000 + 1000 + 16) * 0.5)
    assert norm.sram_pj == pytest.approx((1000 + 1000 + 16) * 2.0)
    fused = layer_energy(layer_time(elementwise(OpKind.ACT), hw), hw)
    assert fused.compute_pj == pytest.approx(1000 * 0.25)  # computed in the epilogue ...
    assert fused.local_pj == fused.sram_pj == fused.dram_pj == 0.0  # ... moving nothing


def test_units_frame_energy_is_layers_in_pj_plus_static_watts_times_ms():
    hw = load_hardware("jetson_orin")
    est = estimate(VARIANTS["b0"], 12, (240, 320), FULL, hw)
    layers_mj = sum(e.total_pj for e in est.energies) / 1e9
    assert est.static_mj == pytest.approx(hw.energy.static_w * est.total_ms)  # W x ms = mJ
    assert est.energy_mj == pytest.approx(layers_mj + est.static_mj)
    terms = est.energy_by_term()
    assert sum(terms.values()) == pytest.approx(est.energy_mj)
    assert set(est.energy_by_category()) <= set(CATEGORIES)
    assert sum(est.energy_by_category().values()) == pytest.approx(est.energy_mj)
    # Doubling one constant adds exactly that term again.
    doubled = replace(
        hw, energy=replace(hw.energy, dram_pj_per_byte=2 * hw.energy.dram_pj_per_byte)
    )
    again = estimate(VARIANTS["b0"], 12, (240, 320), FULL, doubled)
    assert again.energy_mj == pytest.approx(est.energy_mj + terms["dram"])
    assert again.total_ms == est.total_ms  # energy constants never change the latency


def test_categories_follow_the_papers_breakdown():
    assert category("stage1.patch_embed.proj", "conv") == "conv"
    assert category("stage2.block0.attn.sr", "conv") == "conv"
    assert category("stage2.block0.ffn.dwconv", "dwconv") == "conv"
    assert category("stage2.block0.attn.scores", "attn_matmul") == "attention"
    assert category("stage2.block0.norm1", "norm") == "attention"
    assert category("stage2.block0.ffn.fc1", "linear") == "mlp"
    assert category("decoder.classifier", "linear") == "decoder"
    assert category("output.argmax", "add") == "decoder"
    assert category("stage1.norm", "norm") == "other"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_has_energy_within_its_datasheet_power(preset):
    # Skipping more never costs more energy: test_latency_accelerator.py checks it with time.
    hw = load_hardware(preset)
    assert hw.energy is not None and hw.energy.mac_pj > 0 and hw.energy.dram_pj_per_byte > 0
    if hw.energy.tdp_w > 0:  # the prediction never implies more than the datasheet power
        est = estimate(VARIANTS["b2"], 150, (512, 512), FULL, hw)
        assert est.energy_mj / est.total_ms < hw.energy.tdp_w


def _write_preset(tmp_path, preset, change) -> str:
    data = yaml.safe_load((preset_dirs()[-1] / f"{preset}.yaml").read_text())
    change(data["energy"])
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda e: e.pop("dram_pj_per_byte"),
            r"missing energy constants \['energy.dram_pj_per_byte'\]",
        ),
        (lambda e: e.update(static_w=-0.5), r"energy.static_w must be a finite number >= 0"),
        (lambda e: e.update(mac_pj=float("nan")), r"energy.mac_pj must be a finite number"),
        (lambda e: e.update(sram_pj_per_byte="cheap"), r"energy.sram_pj_per_byte must be"),
        (lambda e: e.update(local_reads_per_mac=True), r"energy.local_reads_per_mac must be"),
        (lambda e: e.update(warp_pj=1.0), r"unknown energy keys \['warp_pj'\]"),
    ],
)
def test_a_preset_with_bad_energy_constants_is_refused_naming_the_field(tmp_path, change, message):
    path = _write_preset(tmp_path, "magnet_5nm", change)
    with pytest.raises(LatencyModelError, match=message) as info:
        load_hardware(path)
    assert "chip.yaml" in str(info.value)


def test_energy_spec_refuses_a_non_mapping():
    with pytest.raises(ValueError, match="energy must be a mapping"):
        EnergySpec.from_dict([1, 2], "x")


def test_a_description_without_energy_predicts_latency_only(tmp_path):
    data = yaml.safe_load((preset_dirs()[-1] / "magnet_5nm.yaml").read_text())
    del data["energy"]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(data))
    hw = load_hardware(str(tmp_path / "plain.yaml"))
    est = estimate(VARIANTS["b0"], 12, (120, 160), FULL, hw)
    assert math.isnan(est.energy_mj) and est.total_ms > 0


def test_prediction_is_a_float_that_carries_energy():
    p = Prediction(12.5, 3.0)
    assert p == 12.5 and p * 2 == 25.0 and isinstance(p, float) and p.energy_mj == 3.0
    assert energy_of(p) == 3.0
    assert pickle.loads(pickle.dumps(p)).energy_mj == 3.0
    assert math.isnan(energy_of(12.5))  # a latency-only plugin's plain float
    assert math.isnan(energy_of(Prediction(1.0, -2.0)))
    assert math.isnan(energy_of(Prediction(1.0, math.inf)))


def test_accelerator_plugin_predicts_latency_and_energy():
    model = build_segformer("b0", 12)
    configs = [FULL, SkipConfig(name="half", input_scale=0.5)]
    context = LatencyContext(model, configs, (120, 160), {"hardware": "magnet_5nm"})
    plugin = AcceleratorLatencyModel(context)
    full, half = plugin.predict_all(configs, (120, 160))
    est = estimate(VARIANTS["b0"], 12, (120, 160), FULL, plugin.hardware)
    assert float(full) == pytest.approx(est.total_ms)
    assert energy_of(full) == pytest.approx(est.energy_mj)
    assert 0 < energy_of(half) < energy_of(full)
    assert "magnet_5nm" in plugin.energy_source
