# SPDX-License-Identifier: Apache-2.0
"""Energy per frame, the paper's metric: the shipped skip levels (and B2 with the same skip
configurations) on every accelerator preset, the saving at <= 1.5 mIoU, and where the energy
goes (convolutions, attention, Mix-FFN MLP, decoder). Analytical predictions from MACs and
bytes moved, nothing measured (see each preset's `energy` section for its constants).

Prints tables, then one JSON line:
{"presets": {name: {"levels": [{"level", "name", "mj", "ms", "miou"}], "full": {"mj", "ms"},
  "level_within_1p5": k, "saved_pct_within_1p5": .., "saved_pct_within_1p5_vs_full": ..,
  "paper_metric": {..}, "b2_levels": [..], "b2_full": {..}, "gemm_power_w": .., "tdp_w": ..}},
 "b2_breakdown": {name: {"conv": %, "attention": %, "mlp": %, "decoder": %, "other": %}},
 "b2_terms": {name: {"compute": %, ...}}, "power_sensor": "..."}
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
from pathlib import Path
import re
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_latency import table  # noqa: E402

from dynvit_ros.engine.checkpoint import read_checkpoint  # noqa: E402
from dynvit_ros.engine.levels import LevelTable  # noqa: E402
from dynvit_ros.engine.macs import total_macs  # noqa: E402
from dynvit_ros.engine.model import VARIANTS  # noqa: E402
from dynvit_ros.engine.skip import FULL, SkipConfig  # noqa: E402
from dynvit_ros.latency.accelerator import estimate, load_hardware  # noqa: E402
from dynvit_ros.latency.energy import CATEGORIES  # noqa: E402
from dynvit_ros.power import PowerMeter  # noqa: E402
from dynvit_ros.share import resolve_path  # noqa: E402

PRESETS = ("magnet_5nm", "jetson_orin", "gv100")
MARGIN = 1.5  # mIoU points
# B2 where the paper reports it: ADE20K, 512x512, 150 classes.
B2_INPUT, B2_CLASSES = (512, 512), 150
# MAGNet's reported 40 fJ/op (16 nm) per MAC, scaled to 5 nm as in magnet_5nm.yaml.
MAGNET_ON_CHIP_FJ_PER_MAC = 80.0 * 0.28


def translate(config: SkipConfig, source_depths, target_depths) -> SkipConfig:
    """``config`` on a variant with other stage depths: block positions counted from the end
    of each stage (the shipped levels skip the last block of every stage)."""

    def move(ids):
        return [(s, target_depths[s] - (source_depths[s] - i)) for s, i in ids]

    return replace(
        config,
        skip_attention=move(config.skip_attention),
        skip_dwconv=move(config.skip_dwconv),
        skip_block=move(config.skip_block),
    )


def full_model_miou(table: LevelTable) -> float | None:
    """The unskipped model's mIoU: its level's, or, when the full model is dominated and so not
    a level, the figure the table's ``dominated`` note records.
    """
    for level in table.levels:
        if level.config.is_full:
            return level.accuracy
    match = re.search(r"full \(([\d.]+) mIoU", str(table.info.get("dominated", "")))
    return float(match.group(1)) if match else None


def cheapest_within(accuracy: list[float], energy: list[float], reference: float) -> int | None:
    """The level with the least energy among those within MARGIN points of ``reference``."""
    ok = [i for i, a in enumerate(accuracy) if a is not None and a >= reference - MARGIN]
    return min(ok, key=lambda i: energy[i]) if ok else None


def saved(part: float, whole: float) -> float:
    return round(100.0 * (1.0 - part / whole), 1)


def gemm_power_w(hw) -> float:
    """Predicted power while the chip sustains its GEMM rate (linear-layer efficiency)."""
    e = hw.energy
    rate = hw.peak_macs_per_cycle * hw.clock_ghz * 1e9 * hw.efficiency.get("linear", 1.0)
    per_mac = e.mac_pj + e.local_reads_per_mac * hw.bytes_per_element * e.local_pj_per_byte
    return rate * per_mac * 1e-12 + e.static_w


def run(levels_path: str, model_path: str) -> dict:
    table_ = LevelTable.load(resolve_path(levels_path))
    info = table_.info
    variant = str(info.get("variant", "b0"))
    input_hw = tuple(info.get("input_hw", (240, 320)))
    try:
        classes = read_checkpoint(resolve_path(model_path))[1].num_classes
    except Exception as exc:  # the figures barely depend on it (the classifier only)
        print(f"cannot read {model_path} ({exc}); assuming 11 classes")
        classes = 11
    spec, b2 = VARIANTS[variant], VARIANTS["b2"]
    configs = table_.configs
    accuracy = [lv.accuracy for lv in table_.levels]
    full_miou = full_model_miou(table_)
    b2_configs = [translate(c, spec.depths, b2.depths) for c in configs]
    result: dict = {"presets": {}, "b2_breakdown": {}, "b2_terms": {}}

    print(
        f"Shipped levels ({levels_path}: SegFormer-{variant.upper()}, {classes} classes, "
        f"{input_hw[0]}x{input_hw[1]}); 'full' is the unskipped model "
        f"(mIoU {full_miou if full_miou is not None else '?'}). Energy predicted, not measured.\n"
    )
    for name in PRESETS:
        hw = load_hardware(name)
        ests = [estimate(spec, classes, input_hw, c, hw) for c in configs]
        full = estimate(spec, classes, input_hw, FULL, hw)
        mj = [e.energy_mj for e in ests]
        rows = []
        for i, (lv, est) in enumerate(zip(table_.levels, ests)):
            macs = total_macs([lt.layer for lt in est.layers]) / 1e9
            dram = sum(lt.dram_bytes for lt in est.layers) / 1e6
            rows.append(
                [
                    i,
                    lv.name,
                    "-" if lv.accuracy is None else f"{lv.accuracy:.2f}",
                    f"{macs:.3f}",
                    f"{dram:.2f}",
                    f"{est.total_ms:.3f}",
                    f"{est.energy_mj:.4g}",
                    f"{saved(est.energy_mj, mj[0]):+.1f}%",
                    f"{saved(est.energy_mj, full.energy_mj):+.1f}%",
                ]
            )
        rows.append(
            [
                "full",
                "full",
                "-" if full_miou is None else f"{full_miou:.2f}",
                f"{total_macs([lt.layer for lt in full.layers]) / 1e9:.3f}",
                f"{sum(lt.dram_bytes for lt in full.layers) / 1e6:.2f}",
                f"{full.total_ms:.3f}",
                f"{full.energy_mj:.4g}",
                "",
                "",
            ]
        )
        print(f"{name} ({hw.target})")
        table(
            rows,
            ["level", "config", "mIoU", "GMACs", "DRAM MB", "ms", "mJ", "saved vs L0", "vs full"],
        )
        best = cheapest_within(accuracy, mj, accuracy[0]) if accuracy[0] is not None else None
        entry = {
            "levels": [
                {
                    "level": i,
                    "name": lv.name,
                    "mj": round(e.energy_mj, 6),
                    "ms": round(e.total_ms, 4),
                    "miou": lv.accuracy,
                }
                for i, (lv, e) in enumerate(zip(table_.levels, ests))
            ],
            "full": {"mj": round(full.energy_mj, 6), "ms": round(full.total_ms, 4)},
            "level_within_1p5": best,
            "saved_pct_within_1p5": None if best is None else saved(mj[best], mj[0]),
            "saved_pct_within_1p5_vs_full": None
            if best is None
            else saved(mj[best], full.energy_mj),
        }
        if full_miou is not None:  # the paper's reference: the unskipped model's accuracy
            paper = cheapest_within(accuracy, mj, full_miou)
            entry["paper_metric"] = {
                "level": paper,
                "miou_drop": None if paper is None else round(full_miou - accuracy[paper], 2),
                "saved_pct_vs_full": None if paper is None else saved(mj[paper], full.energy_mj),
            }

        b2_ests = [estimate(b2, B2_CLASSES, B2_INPUT, c, hw) for c in b2_configs]
        b2_full = estimate(b2, B2_CLASSES, B2_INPUT, FULL, hw)
        entry["b2_levels"] = [
            {
                "level": i,
                "name": c.name,
                "mj": round(e.energy_mj, 6),
                "ms": round(e.total_ms, 4),
                "gmacs": round(total_macs([lt.layer for lt in e.layers]) / 1e9, 3),
                "dram_mb": round(sum(lt.dram_bytes for lt in e.layers) / 1e6, 2),
            }
            for i, (c, e) in enumerate(zip(b2_configs, b2_ests))
        ]
        entry["b2_full"] = {"mj": round(b2_full.energy_mj, 6), "ms": round(b2_full.total_ms, 4)}
        entry["gemm_power_w"] = round(gemm_power_w(hw), 3)
        entry["tdp_w"] = hw.energy.tdp_w
        by_cat = b2_full.energy_by_category()
        result["b2_breakdown"][name] = {
            k: round(100.0 * by_cat.get(k, 0.0) / b2_full.energy_mj, 1) for k in CATEGORIES
        }
        result["b2_terms"][name] = {
            k: round(100.0 * v / b2_full.energy_mj, 1) for k, v in b2_full.energy_by_term().items()
        }
        if name == "magnet_5nm":
            on_chip = sum(e.compute_pj + e.local_pj + e.sram_pj for e in b2_full.energies)
            macs = sum(lt.layer.macs for lt in b2_full.layers)
            entry["b2_on_chip_fj_per_mac"] = round(1e3 * on_chip / macs, 1)
        result["presets"][name] = entry

    print(
        f"SegFormer-B2, ADE20K {B2_INPUT[0]}x{B2_INPUT[1]}, the same configurations (blocks "
        "counted from the end of each stage); no trained B2, so MACs and bytes only"
    )
    rows = []
    for i, c in enumerate(b2_configs):
        row = [i, c.name]
        for name in PRESETS:
            p = result["presets"][name]
            lv, full = p["b2_levels"][i], p["b2_full"]
            if name == PRESETS[0]:
                row += [f"{lv['gmacs']:.2f}", f"{lv['dram_mb']:.1f}"]
            row.append(f"{lv['mj']:.4g} ({saved(lv['mj'], full['mj']):+.0f}%)")
        rows.append(row)
    rows.append(
        ["full", "full (unskipped)", "", ""]
        + [f"{result['presets'][n]['b2_full']['mj']:.4g}" for n in PRESETS]
    )
    table(
        rows,
        ["level", "config", "GMACs", "DRAM MB (magnet)"] + [f"{n} mJ (vs full)" for n in PRESETS],
    )

    print("Where B2's energy goes (full model, % of the frame's energy; static shared by time)")
    table(
        [[n] + [f"{result['b2_breakdown'][n][k]:.1f}" for k in CATEGORIES] for n in PRESETS],
        ["preset"] + list(CATEGORIES),
    )
    terms = list(result["b2_terms"][PRESETS[0]])
    table(
        [[n] + [f"{result['b2_terms'][n][k]:.1f}" for k in terms] for n in PRESETS],
        ["preset"] + terms,
    )

    summary = []
    for name in PRESETS:
        p = result["presets"][name]
        best = p["level_within_1p5"]
        paper = p.get("paper_metric", {})
        summary.append(
            [
                name,
                "-" if best is None else f"L{best} {configs[best].name}",
                f"{p['saved_pct_within_1p5']}%",
                f"{p['saved_pct_within_1p5_vs_full']}%",
                "-" if paper.get("level") is None else f"L{paper['level']}",
                "-" if paper.get("level") is None else f"{paper['saved_pct_vs_full']}%",
                f"{p['gemm_power_w']:.3g} W",
                f"{p['tdp_w']:g} W" if p["tdp_w"] else "-",
            ]
        )
    print(
        f"Energy saved by the cheapest level within {MARGIN} mIoU of level 0 (the most accurate "
        f"level), against level 0 and against the unskipped full model; the paper's metric "
        f"(within {MARGIN} of the unskipped model's mIoU, against it); predicted power at the "
        "sustained GEMM rate vs the datasheet TDP"
    )
    table(
        summary,
        [
            "preset",
            "level",
            "saved vs L0",
            "saved vs full",
            "paper level",
            "paper saved",
            "GEMM power",
            "TDP",
        ],
    )
    if "b2_on_chip_fj_per_mac" in result["presets"].get("magnet_5nm", {}):
        print(
            "magnet_5nm, B2 full: on-chip energy (compute + local + global SRAM) per MAC "
            f"{result['presets']['magnet_5nm']['b2_on_chip_fj_per_mac']} fJ, against MAGNet's "
            f"reported 40 fJ/op scaled to 5 nm: {MAGNET_ON_CHIP_FJ_PER_MAC:.1f} fJ per MAC\n"
        )
    result["power_sensor"] = PowerMeter().describe()
    print(f"power sensors on this host: {result['power_sensor']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="config/segformer_b0_camvid.levels.yaml")
    parser.add_argument("--model", default="models/segformer_b0_camvid.safetensors")
    args = parser.parse_args()
    print(json.dumps(run(args.levels, args.model)))


if __name__ == "__main__":
    main()
