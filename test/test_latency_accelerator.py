# SPDX-License-Identifier: Apache-2.0
"""The analytical accelerator model: padding, depthwise mapping, memory bound, presets."""

from dataclasses import replace

import pytest

from dynvit_ros.engine.macs import LayerCost, OpKind
from dynvit_ros.engine.model import VARIANTS
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency.accelerator import (
    HardwareSpec,
    estimate,
    fit_overheads,
    gemm_cycles,
    layer_time,
    load_hardware,
)

PRESETS = ("magnet_5nm", "gv100", "jetson_orin")


def chip(**changes) -> HardwareSpec:
    spec = HardwareSpec(
        name="toy",
        target="toy",
        pe_rows=4,
        pe_cols=2,
        vector_width=16,
        vector_lanes=8,
        clock_ghz=1.0,
        bytes_per_element=1,
        dram_gbps=1e6,
        weight_buffer_bytes=1 << 30,
        input_buffer_bytes=1 << 30,
        global_buffer_bytes=1 << 30,
        reduction_vector="channels",
    )
    return replace(spec, **changes)


def linear(m=64, n=64, k=64) -> LayerCost:
    return LayerCost(
        "fc",
        OpKind.LINEAR,
        1,
        m,
        n,
        k,
        elements=m * n,
        weight_elems=n * k,
        act_in_elems=m * k,
        act_out_elems=m * n,
        bytes_per_element=1,
    )


def dwconv(channels=64, hw=(8, 8)) -> LayerCost:
    m = hw[0] * hw[1]
    return LayerCost(
        "dw",
        OpKind.DWCONV,
        channels,
        m,
        1,
        9,
        elements=channels * m,
        weight_elems=9 * channels,
        act_in_elems=channels * m,
        act_out_elems=channels * m,
        in_shape=(channels, *hw),
        out_shape=(channels, *hw),
        bytes_per_element=1,
    )


def test_time_is_monotonic_in_macs():
    hw = chip()
    for dim in ("m", "n", "k"):
        times = [layer_time(linear(**{dim: size}), hw).total_us for size in (16, 32, 64, 128, 256)]
        assert times == sorted(times) and times[-1] > times[0]


@pytest.mark.parametrize("preset", PRESETS)
def test_skipping_more_is_never_slower_nor_costs_more_energy(preset):
    hw = load_hardware(preset)
    spec = VARIANTS["b0"]
    last = [(s, spec.depths[s] - 1) for s in range(4)]
    nested = [
        FULL,
        SkipConfig(skip_dwconv=last),
        SkipConfig(skip_dwconv=last, skip_attention=last),
        SkipConfig(skip_block=last),
        SkipConfig(skip_block=last, decoder_drop=[3]),
        SkipConfig(skip_block=last, decoder_drop=[3], input_scale=0.5),
    ]
    estimates = [estimate(spec, 150, (240, 320), c, hw) for c in nested]
    for figure in ("total_ms", "energy_mj"):
        values = [getattr(est, figure) for est in estimates]
        assert all(a >= b for a, b in zip(values, values[1:])), (figure, values)
        assert values[-1] < values[0]


def test_reduction_is_padded_to_the_vector_width():
    hw = chip(reduction_vector="flat")
    cycles = {k: gemm_cycles(linear(k=k), hw) for k in (16, 17, 32, 48, 64)}
    assert cycles[17] == cycles[32] == 2 * cycles[16]
    # Wider vectors make skipping coarser: dropping a quarter of k=64 saves a quarter at width 16,
    # nothing at width 32 (48 still needs two 32-wide vectors).
    assert cycles[48] == 0.75 * cycles[64]
    wide = replace(hw, vector_width=32, vector_lanes=4)
    assert gemm_cycles(linear(k=48), wide) == gemm_cycles(linear(k=64), wide)
    scalar = replace(hw, vector_width=1, vector_lanes=128)  # SIMT-like: no reduction padding
    assert gemm_cycles(linear(k=17), scalar) == 17 / 16 * gemm_cycles(linear(k=16), scalar)


def test_output_channels_and_positions_are_padded_to_their_tiles():
    hw = chip()  # 2 columns x 8 lanes = 16 channels, 4 rows of positions per pass
    assert (
        gemm_cycles(linear(n=17), hw)
        == gemm_cycles(linear(n=32), hw)
        == 2 * gemm_cycles(linear(n=16), hw)
    )
    assert gemm_cycles(linear(m=5), hw) == gemm_cycles(linear(m=8), hw)


def test_depthwise_maps_poorly_on_channel_vectors():
    layer, dense = dwconv(), linear(m=64, n=64, k=9)  # same MACs: 64 positions x 64 channels x 9
    assert layer.macs == dense.macs
    for width in (8, 16, 32):
        hw = chip(vector_width=width, reduction_vector="channels")
        per_mac_dw = gemm_cycles(layer, hw) / layer.macs
        per_mac_ideal = 1 / hw.peak_macs_per_cycle
        # one useful input channel per vector: utilisation 1 / width
        assert per_mac_dw == pytest.approx(width * per_mac_ideal)
    # The wider the vector, the worse the depthwise share of a real block.
    spec, cfg = VARIANTS["b2"], FULL
    shares = []
    for width, cols in ((8, 8), (16, 4), (32, 2)):
        hw = replace(load_hardware("magnet_5nm"), vector_width=width, pe_cols=cols)
        est = estimate(spec, 150, (256, 256), cfg, hw)
        shares.append(est.by_kind()["dwconv"] / est.total_ms)
    assert shares == sorted(shares)


def test_memory_bound_layers_cost_bytes_over_bandwidth():
    hw = chip(dram_gbps=1.0, global_buffer_bytes=0)  # 1 GB/s: 1 byte per ns
    layer = linear(m=1024, n=16, k=16)
    expected_us = (layer.weight_bytes + layer.act_in_bytes + layer.act_out_bytes) / 1e3
    assert layer_time(layer, hw).total_us == pytest.approx(expected_us)
    assert layer_time(layer, hw).bound == "memory"
    # An output that fits the global buffer stays on chip for the next layer.
    assert layer_time(layer, replace(hw, global_buffer_bytes=1 << 20)).total_us < expected_us / 10


def test_overheads_and_fusion():
    hw = chip(layer_overhead_us=2.0)
    assert layer_time(linear(), hw).total_us == pytest.approx(
        layer_time(linear(), chip()).total_us + 2.0
    )
    overlap = replace(hw, overhead_mode="overlap", layer_overhead_us=1e6)
    assert layer_time(linear(), overlap).total_us == 1e6
    act = LayerCost("gelu", OpKind.ACT, elements=4096, act_in_elems=4096, act_out_elems=4096)
    assert layer_time(act, replace(hw, fused_kinds=("act",))).total_us == 0
    assert layer_time(act, hw).total_us > 0


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_and_predict(preset):
    hw = load_hardware(preset)
    assert hw.name == preset and hw.target
    est = estimate(VARIANTS["b0"], 150, (120, 160), FULL, hw)
    assert est.total_ms > 0 and any(lt.layer.name == "output.argmax" for lt in est.layers)


def test_gv100_preset_tracks_the_segformer_paper():
    """Regression guard on the published V100 FPS (see benchmarks/bench_latency.py); the last three
    (B0 Cityscapes at shorter sides) were not used to fit the preset's host overheads."""
    hw = load_hardware("gv100")
    for variant, classes, size, fps in (
        ("b0", 150, (512, 512), 50.5),
        ("b0", 19, (1024, 2048), 15.2),
        ("b4", 150, (512, 512), 15.4),
        ("b4", 19, (1024, 2048), 3.0),
        ("b5", 150, (640, 640), 9.8),
        ("b5", 19, (1024, 2048), 2.5),
        ("b0", 19, (768, 1536), 26.3),
        ("b0", 19, (640, 1280), 37.1),
        ("b0", 19, (512, 1024), 47.6),
    ):
        predicted = 1e3 / estimate(VARIANTS[variant], classes, size, FULL, hw).total_ms
        assert abs(predicted / fps - 1) < 0.3, (variant, size, predicted, fps)


def test_overhead_fit_recovers_known_constants():
    truth = replace(load_hardware("gv100"), layer_overhead_us=30.0, frame_overhead_us=2000.0)
    cases = [
        (VARIANTS["b0"], 150, (512, 512)),
        (VARIANTS["b2"], 150, (256, 256)),
        (VARIANTS["b1"], 19, (512, 1024)),
    ]
    points = [
        (spec, classes, size, estimate(spec, classes, size, FULL, truth).total_ms)
        for spec, classes, size in cases
    ]
    bare = replace(truth, layer_overhead_us=0.0, frame_overhead_us=0.0)
    layer_us, frame_us = fit_overheads(points, bare)
    assert layer_us == pytest.approx(30.0, rel=1e-6) and frame_us == pytest.approx(
        2000.0, rel=1e-6
    )
    # Measurements faster than the bare device time: no negative overheads.
    fast = [
        (spec, classes, size, 0.5 * estimate(spec, classes, size, FULL, bare).total_ms)
        for spec, classes, size, _ in points
    ]
    assert fit_overheads(fast, truth) == (0.0, 0.0)


def test_invalid_hardware_is_rejected():
    with pytest.raises(ValueError, match="reduction_vector"):
        chip(reduction_vector="diagonal")
    with pytest.raises(ValueError, match="unknown op kinds"):
        chip(efficiency={"warp": 0.5})
    with pytest.raises(ValueError, match="efficiencies"):
        chip(efficiency={"conv": 1.5})
    with pytest.raises(ValueError, match="missing hardware keys"):
        HardwareSpec.from_dict({"name": "x", "target": "y"})
