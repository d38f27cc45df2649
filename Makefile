# SPDX-License-Identifier: Apache-2.0
# Entry points for building, testing and benchmarking dynvit_ros.
# Everything runs inside the project's virtualenv (.venv), which carries the
# ROS 2 Kilted wheels; see tools/setup_venv.sh and tools/env.sh.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
ENV := export VENV=$(VENV); source $(ROOT)/tools/env.sh
PYTEST_ARGS ?=

.PHONY: venv build lint test demo bench-engine bench-latency bench-allocator bench-node bench-budget bench-multicam bench-backends bench-node-backends bench-contention bench-robustness bench-streaming bench-accuracy bench-geometry bench-calibrate bench-energy bench-staleness eval train clean

venv:
	VENV=$(VENV) $(ROOT)/tools/setup_venv.sh

# Interface packages that launch_ros and the label_info topic need, built beside
# ours where ../shared/ros-extras exists (a ROS install has them already).
ROS_EXTRAS ?= $(abspath $(ROOT)/../shared/ros-extras)
EXTRA_SRC := $(wildcard $(ROS_EXTRAS)/src)

build: venv
	$(ENV); cd $(ROOT) && colcon build --base-paths . $(EXTRA_SRC) --symlink-install \
	    --cmake-args -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF

# pytest (the console script, not `python -m pytest`) so the source tree is
# not put on sys.path ahead of the install space that holds dynvit_ros.msg.
lint: venv
	$(ENV); cd $(ROOT) && ruff check . && ruff format --check .

test: lint build
	$(ENV); cd $(ROOT) && { DYNVIT_REQUIRE_ROS=1 pytest test/ $(PYTEST_ARGS) || rc=$$?; }; \
	rc=$${rc:-0}; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

# The main job: replay the bundled street bag through both nodes under a CPU burst.
# DEMO_ARGS="--camvid" replays every CamVid val frame (needs ../shared/data/CamVid); "--synthetic" the drawn street.
DEMO_ARGS ?=
demo: build
	$(ENV); cd $(ROOT) && $(PY) -m dynvit_ros.demo.demo $(DEMO_ARGS)

bench-engine: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_engine.py

bench-latency: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_latency.py

bench-allocator: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_allocator.py

bench-node: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_node.py

bench-budget: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_budget.py

bench-multicam: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_multicam.py

bench-streaming: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_streaming.py

# torch vs onnxruntime per shipped level (1 and 2 threads), mask agreement, GEMM roofline.
bench-backends: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_backends.py

# The same two backends inside the running node under a 30 Hz camera (fresh nodes, in turns).
bench-node-backends: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_node_backends.py

# The model at 1 and 2 threads, quiet and beside a light or a one-core competitor.
bench-contention: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_contention.py

# Predicted energy per frame of the shipped levels (and B2) on every accelerator preset.
bench-energy: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_energy.py

# Fuzzing, hostile budgets/parameters, faults, soak, overload (~15 min); --quick runs in make test.
bench-robustness: build
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_robustness.py

MODEL := models/segformer_b0_camvid.safetensors
BASELINE := models/baselines/segformer_b0_camvid_plain.safetensors
LEVELS := config/segformer_b0_camvid.levels.yaml

# Re-run the level search from CamVid val (writes outputs/, not the shipped table).
eval: venv
	$(ENV); cd $(ROOT) && $(PY) -m dynvit_ros.training.calibrate --model $(MODEL) --baseline $(BASELINE) \
	    --camvid --no-prune --scales 1,0.75,0.6,0.5,0.4 --repeats 15 --warmup 2 \
	    --levels-out outputs/segformer_b0_camvid.levels.yaml --force

# Accuracy and latency of the shipped levels on CamVid val, post-hoc vs skip-aware.
bench-accuracy: venv
	$(ENV); cd $(ROOT) && $(PY) -m dynvit_ros.training.calibrate --model $(MODEL) --baseline $(BASELINE) \
	    --camvid --levels $(LEVELS)

# The shipped weights with encoder inputs on and off the 32-pixel grid (CamVid val and train).
bench-geometry: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_geometry.py

# What a mask g frames old costs in mIoU (CamVid val in order) against the streaming choice's model.
bench-staleness: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_staleness.py

# Label-free calibration checked against CamVid labels, and what a search costs for B0 and B2.
bench-calibrate: venv
	$(ENV); cd $(ROOT) && $(PY) benchmarks/bench_calibrate.py

# Train the default model (the shipped recipe, see the README): sandwich training from the plain
# baseline at 240x320, then at the camera's 360x480 with the sampled configuration drawn from the
# calibration candidates. TRAIN_ARGS / TRAIN2_ARGS change a phase, e.g. TRAIN_ARGS="--skip-aware
# --epochs 300" trains phase 1 from scratch.
TRAIN_ARGS ?= --init models/baselines/segformer_b0_camvid_plain.safetensors --sandwich --threads 2 \
	--lr 2e-4 --warmup 0.02 --epochs 200 --max-minutes 55 --eval-every 5 --seed 1
TRAIN2_ARGS ?= --sandwich --students candidates --input-size 360 480 --threads 2 \
	--lr 2e-4 --warmup 0.02 --epochs 400 --max-minutes 70 --eval-every 10 --seed 2
train: venv
	$(ENV); cd $(ROOT) && $(PY) -m dynvit_ros.training.train --out runs/b0_sandwich $(TRAIN_ARGS) \
	    && $(PY) -m dynvit_ros.training.train --out runs/b0_v2_480 \
	    --init runs/b0_sandwich/final.safetensors $(TRAIN2_ARGS)

clean:
	rm -rf $(ROOT)/build $(ROOT)/install $(ROOT)/log
