# SPDX-License-Identifier: Apache-2.0
"""How a little competing load slows the model, at 1 and 2 torch threads.

    make bench-contention     # or: python benchmarks/bench_contention.py

In bench-streaming and bench-node-backends the node runs the model 1.5-3x
slower than bench-backends does in a quiet process. The node is not alone: a
camera driver or bag player, DDS and the load monitor take a share of a core.
This benchmark isolates that effect in one process (no ROS): the shipped
model on CamVid val frames, levels ``--only``, at 1 and 2 intra-op threads,
quiet and with a competitor: ``duty`` (a process that is busy 3 ms out of
every 10, about what the camera replay takes) and ``core`` (a process busy on
one core, pinned, like bench-streaming's burst). Conditions, thread counts and
levels take turns for ``--rounds`` rounds; medians over the rounds. A third
setting, ``adaptive``, runs frames through what segformer_node runs per frame
(:class:`dynvit_ros.ros.segmenter.Segmenter`, fixed mode: its per-frame thread
choice with ``thread_trials`` on and the profiled latency model) after the two
fixed counts in each condition, its chooser and latency model kept from one
condition to the next, so each change of competitor is one it has to notice:
its medians include its trial frames and the frames it takes to react. Ends
with one JSON line
{"levels": [{"level", "condition": {"1": ms, "2": ms, "adaptive": ms}}],
"adaptive": {"condition": {"mean_threads", "trials"}}, ...}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from benchclient import model_parser, pinned_burst  # noqa: E402

DUTY = (
    "import time\n"
    "while True:\n"
    "    t = time.perf_counter()\n"
    "    while time.perf_counter() - t < 0.003:\n"
    "        pass\n"
    "    time.sleep(0.007)\n"
)
CONDITIONS = ("quiet", "duty", "core")
SETTINGS = ("2", "1", "adaptive")


def competitor(condition: str) -> subprocess.Popen | None:
    if condition == "duty":
        return subprocess.Popen([sys.executable, "-c", DUTY])
    if condition == "core":
        return pinned_burst(3600.0)
    return None


def load_segmenter(model: Path, levels: Path, frame_hw):
    """What segformer_node runs per frame, without ROS: fixed mode, two threads at most,
    adaptive threads with trials on (no load monitor here, so trials are its only way to
    find a busy core), the profiled latency model timing ``frame_hw`` frames."""
    from dynvit_ros.ros.segmenter import PARAMETERS, Segmenter

    params = {name: spec.default for name, spec in PARAMETERS.items()}
    options = {"cache_dir": str(REPO / "outputs" / "cache"), "frame_hw": list(frame_hw)}
    params.update(
        model_path=str(Path(model).resolve()),
        levels_path=str(Path(levels).resolve()),
        num_threads=2,
        tune_allocator=False,
        mode="fixed",
        thread_trials=True,
        publish_color=False,
        latency_options=json.dumps({**options, "progress": False}),
    )
    return Segmenter.load(params, warn=lambda line: print(line, file=sys.stderr))


def main(argv=None) -> int:
    p = model_parser(__doc__.split("\n")[0])
    p.add_argument("--only", type=int, nargs="+", default=[0, 2, 5, 11])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", type=int, default=10, help="timed frames per turn")
    args = p.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs at least 2 cores")

    from dynvit_ros.hostload import HostLoad
    from dynvit_ros.training import camvid

    frames = camvid.load_split(camvid.require_root(), "val").images[:20]
    seg = load_segmenter(args.model, args.levels, frames[0].shape[:2])
    runtime = seg.runtime
    for level in args.only:  # warm every level at both thread counts
        for threads in (1, 2):
            runtime.infer(frames[0], level, threads)
    times: dict = {}
    chosen: dict = {c: {"threads": [], "trials": 0} for c in CONDITIONS}
    with HostLoad() as load:
        for turn in range(args.rounds):
            for condition in CONDITIONS:
                proc = competitor(condition)
                try:
                    for setting in SETTINGS:
                        for level in args.only:
                            if setting != "adaptive":  # untimed: the count's first frame
                                runtime.infer(frames[0], level, int(setting))
                            else:
                                seg.apply({"skip_level": level})
                            for k in range(args.frames):
                                frame = frames[k % len(frames)]
                                if setting == "adaptive":
                                    stats = seg.run(frame, time.monotonic()).stats
                                    ms = stats["measured_ms"]
                                    chosen[condition]["threads"].append(stats["threads"])
                                    chosen[condition]["trials"] += stats["thread_probe"]
                                else:
                                    ms = runtime.infer(frame, level, int(setting)).infer_ms
                                times.setdefault((level, condition, setting), []).append(ms)
                finally:
                    if proc is not None:
                        proc.kill()
                        proc.wait()
            print(f"round {turn + 1} done", file=sys.stderr, flush=True)
    rows = []
    for level in args.only:
        row = {"level": level, "name": runtime.levels[level].config.name}
        for condition in CONDITIONS:
            row[condition] = {
                t: round(statistics.median(times[(level, condition, t)]), 2) for t in SETTINGS
            }
        rows.append(row)
        cells = "  ".join(
            f"{c}: 2 thr {row[c]['2']:6.1f} / 1 thr {row[c]['1']:6.1f} / "
            f"adaptive {row[c]['adaptive']:6.1f} ms"
            for c in CONDITIONS
        )
        print(f"L{level:<2} {row['name']:24} {cells}", file=sys.stderr)
    summary = {
        c: {
            "mean_threads": round(statistics.fmean(v["threads"]), 2),
            "trials": v["trials"],
        }
        for c, v in chosen.items()
    }
    print(f"adaptive: {summary}", file=sys.stderr)
    print(json.dumps({"levels": rows, "adaptive": summary, "host_load": load.report()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
