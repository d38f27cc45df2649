# SPDX-License-Identifier: Apache-2.0
"""ONNX export of every skip level: one fixed-size graph per level, checked against PyTorch.

A level decides which modules run and the geometry (input scale, fuse stride), so each
level is its own static graph. A graph folder holds ``level{i}.onnx``, a sidecar
``level{i}.json`` per graph (its SHA-256, its key, the check it passed) and ``index.json``
for people. Every graph also carries, in its ONNX metadata, the level (index, name,
configuration), the model's metadata and its key: digest of the model's weights, variant,
class count, input size and level configuration. :func:`check_graph` compares the key, the
graph's input and output shapes and the file's digest with what the loaded model
expects, so a graph of another model, input size or class count, or a damaged file, is
refused with a reason instead of being run.

Every export is checked against eager PyTorch on frames (real ones from the command
line; seeded noise when a cache is built at configure): max |logits difference| at most
:data:`TOLERANCE`, or that level's export fails.

Exporter: TorchScript-based ``torch.onnx.export(dynamo=False)``, opset 17. It takes
~0.7 s per B0 level at 240x320 here, the torch.export-based one ~10 s (which matters for
a cache built at configure and for tests), and the latter cannot trace the decoder's
fold cache (it reads parameters' ``data_ptr``). PyTorch 2.9+ marks it deprecated; the
pinned torch has it.

What looked like a wrong ``attn-last`` graph (issue 14) was the way the export was
driven: ``torch.onnx.export`` switches the module it is given to eval mode and then
restores *that module's* previous mode, recursively. A wrapper left in training mode
(``nn.Module``'s default) put the SegFormer in training mode after the first export, so
every later eager reference ran batch norm on batch statistics, and dropout: 10-12 logits
off, while the graphs were right. Here the wrapper is in eval mode, references are taken
before exporting, and the model's mode is checked after every export.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
import hashlib
import json
import logging
import os
from pathlib import Path
import sys
import time
from typing import Callable, Sequence
import warnings

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from dynvit_ros.engine.checkpoint import ModelMetadata
from dynvit_ros.engine.levels import LevelTable
from dynvit_ros.engine.model import SegFormer, VariantSpec, scaled_size, stage_sizes
from dynvit_ros.engine.preprocess import normalizer
from dynvit_ros.engine.skip import SkipConfig

FORMAT = "dynvit_ros/onnx/v1"
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
TOLERANCE = 1e-4
KEY_PROP = "dynvit.key"
log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A level could not be exported, or its graph differs from eager PyTorch."""


class OnnxRuntimeMissing(ImportError):
    """onnxruntime is not importable."""


def import_onnxruntime():
    """The onnxruntime module, or an error that says what to do."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxRuntimeMissing(
            "the onnxruntime backend needs the Python package onnxruntime, which is not "
            f"importable here ({exc}). Install it (pip install 'onnxruntime>=1.20,<2'; "
            "tools/requirements.txt has it) or set backend to 'torch'."
        ) from exc
    return onnxruntime


# -- identities ----------------------------------------------------------------------
def model_digest(model: nn.Module) -> str:
    """SHA-256 of the weights and buffers as float32: the same for a checkpoint however stored,
    different for any other weights.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            continue
        value = tensor.detach().to(torch.float32).contiguous().numpy()
        digest.update(name.encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def logits_hw(spec: VariantSpec, input_hw: tuple[int, int], config: SkipConfig) -> tuple[int, int]:
    """Size of the logits a level returns (the fuse grid of the scaled, unpadded input)."""
    scaled = scaled_size(int(input_hw[0]), int(input_hw[1]), config.input_scale)
    return stage_sizes(*scaled, spec)[config.fuse_level]


@dataclass(frozen=True)
class GraphSpec:
    """What one level's graph must be: the key it carries and the shapes it has."""

    key: dict
    name: str
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]

    @property
    def level(self) -> int:
        return int(self.key["level"])


def graph_specs(
    model: SegFormer, metadata: ModelMetadata, levels: LevelTable, input_hw: tuple[int, int]
) -> list[GraphSpec]:
    """One :class:`GraphSpec` per level of ``levels`` for this model at ``input_hw``."""
    digest = model_digest(model)
    height, width = int(input_hw[0]), int(input_hw[1])
    specs = []
    for level in levels:
        key = {
            "format": FORMAT,
            "model": digest,
            "variant": model.variant.name,
            "num_classes": int(metadata.num_classes),
            "input_hw": [height, width],
            "level": level.level,
            "config": level.config.key(),
            # The encoder's input size: how the code snaps a scale is part of the graph.
            "encoder_hw": list(scaled_size(height, width, level.config.input_scale)),
        }
        out_hw = logits_hw(model.variant, (height, width), level.config)
        specs.append(
            GraphSpec(
                key,
                level.name,
                (1, 3, height, width),
                (1, int(metadata.num_classes), *out_hw),
            )
        )
    return specs


def folder_key(specs: Sequence[GraphSpec]) -> str:
    """Name of a cache folder: model, input size, class count and the whole level table, plus
    the exporter (opset, torch version), whose graphs may differ between versions.
    """
    content = {
        "format": FORMAT,
        "opset": OPSET,
        "torch": torch.__version__,
        "levels": [s.key for s in specs],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dynvit_ros" / "onnx"


def graph_path(folder: str | Path, level: int) -> Path:
    return Path(folder) / f"level{level}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


# -- export --------------------------------------------------------------------------
def bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, ...]:
    """ATen's taps for bilinear resizing along one axis (align_corners=False, no antialias):
    (first index, second index, first weight, second weight), in float32 as its CPU kernel
    computes them: source = (in/out) * (x + 0.5) - 0.5, clamped at 0.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    source = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    source = np.maximum(source, np.float32(0.0))
    first = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    weight = np.clip(source - first.astype(np.float32), 0.0, 1.0).astype(np.float32)
    second = first + (first < in_size - 1)
    return (
        torch.from_numpy(first),
        torch.from_numpy(second),
        torch.from_numpy(np.float32(1.0) - weight),
        torch.from_numpy(weight),
    )


def resize_with_taps(images: torch.Tensor, rows: tuple, cols: tuple) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) by gathering with precomputed taps, width first and then
    height, as ATen's kernel sums: sum_h w_h * (sum_w w_w * x).
    """

    def along_width(x: torch.Tensor) -> torch.Tensor:
        i0, i1, w0, w1 = cols
        return x.index_select(3, i0) * w0 + x.index_select(3, i1) * w1

    i0, i1, w0, w1 = rows
    top = along_width(images.index_select(2, i0))
    bottom = along_width(images.index_select(2, i1))
    return top * w0[:, None] + bottom * w1[:, None]


class _Level(nn.Module):
    """One skip level as a module of the image alone (what a tracer records).

    A level's input resize is done here with ATen's own taps instead of an ONNX ``Resize``:
    onnxruntime maps an output pixel x to (x + 0.5) / (out/in) - 0.5 where ATen computes
    (x + 0.5) * (in/out) - 0.5, which for a scale such as 0.75 rounds differently (~1e-5
    pixel); the encoder amplifies that to ~1e-4 in the logits (1.2e-4 measured at
    attn-last+s0.75 on one of 48 frames). With the taps the graph resizes as eager PyTorch.
    The decoder's upsampling comes late and stays a ``Resize`` (<= 2e-5 at every level).
    """

    def __init__(self, model: SegFormer, config: SkipConfig, input_hw: tuple[int, int]):
        super().__init__()
        self.model = model
        self.config = config
        height, width = int(input_hw[0]), int(input_hw[1])
        scaled = scaled_size(height, width, config.input_scale)
        self.taps = None
        if scaled != (height, width):
            self.taps = (bilinear_taps(height, scaled[0]), bilinear_taps(width, scaled[1]))
            # The model then sees the resized image at scale 1: same geometry (padding, crop).
            self.config = replace(config, input_scale=1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.taps is not None:
            images = resize_with_taps(images, *self.taps)
        return self.model(images, self.config)


def eager_logits(model: SegFormer, config: SkipConfig, images: torch.Tensor) -> np.ndarray:
    """Reference logits, one frame at a time as the runtime runs them."""
    if model.training:
        raise ExportError("the model is in training mode: references need eval mode")
    with torch.inference_mode():
        return np.stack([model(frame[None], config)[0].numpy() for frame in images])


def _trace_to_onnx(model: SegFormer, config: SkipConfig, path: Path, input_hw) -> None:
    wrapper = _Level(model, config, input_hw).eval()  # export restores its mode, recursively
    example = torch.zeros(1, 3, int(input_hw[0]), int(input_hw[1]))
    with warnings.catch_warnings():
        # Shapes become constants on purpose (one graph per input size), and the exporter
        # announces its own deprecation.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)  # constant-folding notes
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
            )
    if model.training:
        raise ExportError("torch.onnx.export left the model in training mode")


def _set_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "dynvit_ros"
    onnx.save(proto, str(path))


def session_options(threads: int, ort=None):
    """Session settings shared by the backend and the checks.

    All graph optimisations; ``threads`` intra-op threads and no inter-op pool (the graph
    is a chain). Worker threads spin between operators (onnxruntime's default): with them
    sleeping instead, a frame took 20% longer at 2 threads here (attn-last 20.9 vs 17.1 ms,
    medians of 3 alternating blocks); the spin ends shortly after each frame.
    """
    ort = ort or import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.log_severity_level = 3
    return options


def open_session(path: str | Path, threads: int = 1):
    ort = import_onnxruntime()
    return ort.InferenceSession(
        str(path), session_options(threads, ort), providers=["CPUExecutionProvider"]
    )


def run_session(session, images: torch.Tensor) -> np.ndarray:
    """Logits of each frame of ``images`` (N, 3, H, W) through a batch-1 graph."""
    frames = images.detach().to(torch.float32).numpy()
    return np.concatenate(
        [
            session.run([OUTPUT_NAME], {INPUT_NAME: frames[i : i + 1]})[0]
            for i in range(len(frames))
        ]
    )


def export_level(
    model: SegFormer,
    metadata: ModelMetadata,
    spec: GraphSpec,
    config: SkipConfig,
    folder: str | Path,
    frames: torch.Tensor,
    tolerance: float = TOLERANCE,
    threads: int = 1,
) -> dict:
    """Export one level to ``folder``, check it on ``frames`` (normalised, at the input size)
    and write its sidecar. Returns the sidecar's content; raises :class:`ExportError`, leaving
    no graph behind, when the check fails.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = graph_path(folder, spec.level)
    if tuple(frames.shape[1:]) != spec.input_shape[1:]:
        raise ExportError(
            f"check frames are {tuple(frames.shape[1:])}, the graph takes {spec.input_shape[1:]}"
        )
    model.eval()
    start = time.perf_counter()
    reference = eager_logits(model, config, frames)  # before exporting (see the module doc)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _trace_to_onnx(model, config, tmp, spec.input_shape[2:])
        _set_metadata(
            tmp,
            {
                KEY_PROP: json.dumps(spec.key, sort_keys=True),
                "dynvit.level": str(spec.level),
                "dynvit.name": spec.name,
                "dynvit.config": config.to_json(),
                "dynvit.model_metadata": json.dumps(asdict(metadata), sort_keys=True),
                "dynvit.exporter": f"torch {torch.__version__} torchscript opset {OPSET}",
            },
        )
        export_s = time.perf_counter() - start
        session, problem = open_checked(tmp, spec, None, threads)
        if session is None:
            raise ExportError(f"level {spec.level} ({spec.name}): exported graph {problem}")
        out = run_session(session, frames)
        if out.shape != reference.shape:
            raise ExportError(
                f"level {spec.level} ({spec.name}): graph gives {out.shape}, "
                f"eager PyTorch {reference.shape}"
            )
        diff = float(np.abs(out - reference).max())
        if not diff <= tolerance:
            raise ExportError(
                f"level {spec.level} ({spec.name}): max |logits difference| {diff:.3g} against "
                f"eager PyTorch exceeds {tolerance:g} on {len(frames)} frames"
            )
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    info = {
        "sha256": file_digest(path),
        "key": spec.key,
        "name": spec.name,
        "max_abs_diff": diff,
        "frames": int(len(frames)),
        "tolerance": tolerance,
        "export_s": round(export_s, 3),
        "exporter": f"torch {torch.__version__} torchscript opset {OPSET}",
    }
    side = _sidecar(path)
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    side_tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    side_tmp.replace(side)
    return info


# -- checks at load ------------------------------------------------------------------
def _describe_mismatch(found: dict, expected: dict) -> str | None:
    if found.get("format") != expected["format"]:
        return f"has format {found.get('format')!r}, expected {expected['format']!r}"
    # Most telling first: a graph of another class count or input size is from another
    # model too, but saying so would hide why.
    if found.get("variant") != expected["variant"]:
        return f"is a SegFormer-{found.get('variant')}, the model a {expected['variant']}"
    if found.get("num_classes") != expected["num_classes"]:
        return f"has {found.get('num_classes')} classes, the model {expected['num_classes']}"
    if found.get("input_hw") != expected["input_hw"]:
        return f"takes input {found.get('input_hw')}, the model runs at {expected['input_hw']}"
    if found.get("model") != expected["model"]:
        return (
            f"is from another model (weights {str(found.get('model'))[:12]}..., the loaded "
            f"model's {expected['model'][:12]}...)"
        )
    if found.get("level") != expected["level"] or found.get("config") != expected["config"]:
        return (
            f"is level {found.get('level')} {found.get('config')}, expected level "
            f"{expected['level']} {expected['config']}"
        )
    return None


def open_checked(
    path: str | Path, spec: GraphSpec, digest: str | None = None, threads: int = 1
) -> tuple[object | None, str]:
    """(session, "") for the graph at ``path`` if it fits ``spec``, else (None, reason).

    ``digest``: the SHA-256 the graph's sidecar recorded (None skips the file check). Then
    the key in the graph's metadata and its input and output shapes are compared with
    ``spec``.
    """
    path = Path(path)
    if not path.is_file():
        return None, "does not exist"
    if digest is not None and file_digest(path) != digest:
        return None, "differs from the file that was exported and checked (SHA-256 mismatch)"
    try:
        session = open_session(path, threads)
    except OnnxRuntimeMissing:
        raise
    except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
        return None, f"cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})"
    problem = _session_mismatch(session, spec)
    return (None, problem) if problem else (session, "")


def check_graph(path: str | Path, spec: GraphSpec, digest: str | None = None) -> str | None:
    """Why the graph at ``path`` must not be used for ``spec`` (None: it fits)."""
    return open_checked(path, spec, digest)[1] or None


def _session_mismatch(session, spec: GraphSpec) -> str | None:
    props = session.get_modelmeta().custom_metadata_map
    try:
        found = json.loads(props[KEY_PROP])
    except (KeyError, ValueError):
        return "carries no dynvit_ros key (not exported by this tool)"
    problem = _describe_mismatch(found if isinstance(found, dict) else {}, spec.key)
    if problem:
        return problem
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        return f"has inputs {[i.name for i in inputs]}, expected ['{INPUT_NAME}']"
    if tuple(inputs[0].shape) != spec.input_shape:
        return f"takes input shape {inputs[0].shape}, expected {list(spec.input_shape)}"
    if len(outputs) != 1 or tuple(outputs[0].shape) != spec.output_shape:
        shapes = [o.shape for o in outputs]
        return f"returns {shapes}, expected [{list(spec.output_shape)}]"
    return None


def load_level(folder: str | Path, spec: GraphSpec, threads: int) -> tuple[object | None, str]:
    """(session, "") for the level's graph in ``folder`` if it fits ``spec``, else (None, reason);
    the reason is "no graph" when there is none.
    """
    path = graph_path(folder, spec.level)
    if not path.exists():
        return None, "no graph"
    try:
        digest = str(json.loads(_sidecar(path).read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, "has no readable sidecar (level.json)"
    return open_checked(path, spec, digest, threads)


def ensure_graphs(
    model: SegFormer,
    metadata: ModelMetadata,
    levels: LevelTable,
    input_hw: tuple[int, int],
    folder: str | Path | None = None,
    threads: int = 1,
    frames: torch.Tensor | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[list, Path]:
    """One onnxruntime session per level, from ``folder`` (default: a cache folder keyed by
    model, level table, input size and exporter), exporting what is missing and replacing
    what is refused. Returns (sessions in level order, folder).

    A graph that exists but does not fit is reported through ``warn`` with the reason, then
    rebuilt; a missing one is simply exported (logged at info level).
    """
    import_onnxruntime()
    specs = graph_specs(model, metadata, levels, input_hw)
    folder = Path(folder) if folder else default_cache_root() / folder_key(specs)
    sessions = []
    for spec, level in zip(specs, levels):
        session, reason = load_level(folder, spec, threads)
        if session is None:
            if reason == "no graph":
                log.info("exporting level %d (%s) to %s", spec.level, spec.name, folder)
            elif warn is not None:
                warn(f"ONNX graph {graph_path(folder, spec.level)} {reason}: exporting it again")
            if frames is None:
                frames = check_frames(input_hw)
            export_level(model, metadata, spec, level.config, folder, frames, threads=threads)
            _write_index(folder, specs)
            session, reason = load_level(folder, spec, threads)
            if session is None:
                raise ExportError(f"level {spec.level}: the graph just exported {reason}")
        sessions.append(session)
    return sessions, folder


def check_frames(input_hw: tuple[int, int], count: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded stand-ins for normalised frames (smooth images plus noise), used where no real
    frames are at hand (a cache built at configure).
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 8, 8, generator=generator) * 255.0
    pixels = F.interpolate(coarse, size=tuple(input_hw), mode="bilinear", align_corners=False)
    pixels = (pixels + 20.0 * torch.randn(pixels.shape, generator=generator)).clamp(0, 255)
    return normalizer()(pixels)


def _write_index(folder: Path, specs: Sequence[GraphSpec]) -> None:
    rows = []
    for spec in specs:
        try:
            info = json.loads(_sidecar(graph_path(folder, spec.level)).read_text())
        except (OSError, ValueError):
            continue
        rows.append(
            {
                "level": spec.level,
                "name": spec.name,
                "file": graph_path(folder, spec.level).name,
                "max_abs_diff": info.get("max_abs_diff"),
                "config": spec.key["config"],
            }
        )
    index = {"format": FORMAT, "opset": OPSET, "key": folder_key(specs), "levels": rows}
    tmp = folder / f".index.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(folder / "index.json")


# -- command line ----------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _bag_frames(path: Path, count: int) -> list[np.ndarray]:
    from dynvit_ros.bags.io import bag_topics, read_topic
    from dynvit_ros.ros.image_io import to_rgb

    topics = [
        topic
        for topic, (msgtype, _) in bag_topics(path).items()
        if msgtype.endswith(("/Image", "/CompressedImage"))
    ]
    if not topics:
        raise ExportError(f"{path}: no sensor_msgs Image or CompressedImage topic")
    messages = read_topic(path, topics[0])
    step = max(1, len(messages) // count)
    return [to_rgb(m) for m in messages[::step][:count]]


def load_frames(paths: Sequence[str | Path], count: int = 4) -> list[np.ndarray]:
    """Up to ``count`` RGB frames spread over image files, folders of images and rosbag2
    folders (the first image topic).
    """
    import cv2

    frames: list[np.ndarray] = []
    for raw in paths:
        path = Path(raw)
        if (path / "metadata.yaml").is_file():  # a rosbag2 folder
            frames.extend(_bag_frames(path, count))
            continue
        files = (
            sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        step = max(1, len(files) // count)
        for file in files[::step][:count]:
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ExportError(f"cannot read image {file}")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not frames:
        raise ExportError(f"no frames found in {[str(p) for p in paths]}")
    return frames[:count]


def preprocess_frames(frames: Sequence[np.ndarray], metadata: ModelMetadata) -> torch.Tensor:
    """RGB frames -> normalised (N, 3, H, W) at the model's input size, as the runtime does."""
    hw = (int(metadata.input_size[0]), int(metadata.input_size[1]))
    normalize = normalizer(metadata.mean, metadata.std)
    batch = []
    for rgb in frames:
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        if tuple(image.shape[-2:]) != hw:
            image = F.interpolate(image, size=hw, mode="bilinear", align_corners=False)
        batch.append(normalize(image)[0])
    return torch.stack(batch)


def export_all(
    model: SegFormer,
    metadata: ModelMetadata,
    levels: LevelTable,
    folder: str | Path,
    frames: torch.Tensor,
    tolerance: float = TOLERANCE,
    threads: int = 1,
    report: Callable[[str], None] = print,
) -> tuple[list[dict], list[str]]:
    """Export and check every level; a failed level is reported and the others still exported.
    Returns (sidecars of the exported levels, error lines).
    """
    input_hw = (int(metadata.input_size[0]), int(metadata.input_size[1]))
    specs = graph_specs(model, metadata, levels, input_hw)
    done, errors = [], []
    for spec, level in zip(specs, levels):
        try:
            info = export_level(
                model, metadata, spec, level.config, folder, frames, tolerance, threads
            )
        except Exception as exc:  # one broken level must not hide the others' results
            errors.append(f"level {spec.level} ({spec.name}): {type(exc).__name__}: {exc}")
            report(f"FAILED {errors[-1]}")
            continue
        done.append(info)
        report(
            f"level {spec.level} {spec.name:<28} {graph_path(folder, spec.level).name}  "
            f"max |diff| {info['max_abs_diff']:.2e}  export {info['export_s']:.1f} s"
        )
    _write_index(Path(folder), specs)
    return done, errors


def main(argv: Sequence[str] | None = None) -> int:
    from dynvit_ros.engine.checkpoint import load_model
    from dynvit_ros.share import resolve_path

    parser = argparse.ArgumentParser(
        description="Export one ONNX graph per skip level, each checked against eager PyTorch."
    )
    parser.add_argument("--model", required=True, help="checkpoint (.safetensors, .pth, HF dir)")
    parser.add_argument("--levels", help="skip-level table (YAML); default: the full model only")
    parser.add_argument("--out", required=True, type=Path, help="folder for level{i}.onnx")
    parser.add_argument(
        "--frames",
        nargs="+",
        default=["data/sample_street"],
        help="images, folders of images or rosbag2 folders to check on (default: the bundled "
        "sample bag)",
    )
    parser.add_argument("--count", type=int, default=4, help="frames to check on")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import_onnxruntime()
        model, metadata = load_model(resolve_path(args.model))
        levels = (
            LevelTable.load(resolve_path(args.levels))
            if args.levels
            else LevelTable.from_configs([SkipConfig()])
        )
        frames = preprocess_frames(
            load_frames([resolve_path(p) for p in args.frames], args.count), metadata
        )
    except Exception as exc:  # a command line tool: one line, no traceback
        print(f"export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(
        f"exporting {len(levels)} levels of {args.model} (input {metadata.input_size}, "
        f"opset {OPSET}) to {args.out}, checked on {len(frames)} frames"
    )
    _, errors = export_all(model, metadata, levels, args.out, frames, args.tolerance, args.threads)
    if errors:
        print(f"export: {len(errors)} of {len(levels)} levels failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
