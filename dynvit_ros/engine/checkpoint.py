# SPDX-License-Identifier: Apache-2.0
"""Checkpoint I/O: Hugging Face folders, NVlabs/mmseg ``.pth`` files and the project's own format.

Only safe loaders are used: ``safetensors`` and ``torch.load(weights_only=True)``.
Every failure is a :class:`CheckpointError` whose message says what is wrong
and, for shape mismatches, which variant and class count the file looks like.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import pickle
import re
from typing import Callable, Mapping
import zipfile

from safetensors import SafetensorError
from safetensors.torch import save_file
import torch

from dynvit_ros.engine.model import VARIANTS, ModelConfig, SegFormer, VariantSpec
from dynvit_ros.engine.preprocess import IMAGENET_MEAN, IMAGENET_STD

FORMAT_TAG = "dynvit_ros/segformer/v1"
StateDict = dict[str, torch.Tensor]


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model."""


@dataclass
class ModelMetadata:
    """What a deployed model needs beyond its weights."""

    variant: str
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_size: list[int] = field(default_factory=lambda: [512, 512])  # [height, width]
    block_norm_eps: float = 1e-6
    provenance: dict = field(default_factory=dict)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            variant=_variant(self.variant),
            num_classes=self.num_classes,
            block_norm_eps=self.block_norm_eps,
        )

    @classmethod
    def from_dict(cls, data: dict) -> "ModelMetadata":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise CheckpointError(
            f"unknown SegFormer variant {name!r}; known: {sorted(VARIANTS)}"
        ) from None


# ---------------------------------------------------------------------------
# Key names. Ours follow the paper's modules; see dynvit_ros.engine.model.
# ---------------------------------------------------------------------------
_OURS_BLOCK = re.compile(r"^encoder\.stages\.(\d)\.blocks\.(\d+)\.(.+)\.(weight|bias)$")


@dataclass(frozen=True)
class _Scheme:
    """How another codebase names the same tensors.

    ``blocks`` maps our per-block module paths to theirs; ``others`` lists
    (our regex, their format) pairs for the rest, where ``{s}`` is the stage
    index in their numbering and ``{p}`` the parameter name.
    """

    name: str
    block_re: re.Pattern
    block_fmt: str
    stage_base: int
    blocks: dict
    others: tuple

    def to_ours(self, key: str) -> str | None:
        m = self.block_re.match(key)
        if m:
            part = {v: k for k, v in self.blocks.items()}.get(m.group(3))
            return (
                None
                if part is None
                else (
                    f"encoder.stages.{int(m.group(1)) - self.stage_base}"
                    f".blocks.{m.group(2)}.{part}.{m.group(4)}"
                )
            )
        for ours, theirs in self.others:
            m = re.match(_as_regex(theirs), key)
            if m:
                stage = m.groupdict().get("s")
                stage = None if stage is None else int(stage) - self.stage_base
                return ours.format(s=stage, p=m.group("p"))
        return None

    def from_ours(self, key: str) -> str | None:
        m = _OURS_BLOCK.match(key)
        if m:
            part = self.blocks.get(m.group(3))
            return (
                None
                if part is None
                else self.block_fmt.format(
                    s=int(m.group(1)) + self.stage_base, b=m.group(2), part=part, p=m.group(4)
                )
            )
        for ours, theirs in self.others:
            m = re.match(_as_regex(ours), key)
            if m:
                stage = m.groupdict().get("s")
                stage = None if stage is None else int(stage) + self.stage_base
                return theirs.format(s=stage, p=m.group("p"))
        return None


def _as_regex(fmt: str) -> str:
    return (
        "^"
        + re.escape(fmt)
        .replace(r"\{s\}", r"(?P<s>\d)")
        .replace(r"\{p\}", r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)")
        + "$"
    )


_OURS_OTHERS = (
    "encoder.stages.{s}.patch_embed.proj.{p}",
    "encoder.stages.{s}.patch_embed.norm.{p}",
    "encoder.stages.{s}.norm.{p}",
    "decoder.stage_mlps.{s}.{p}",
    "decoder.fuse.{p}",
    "decoder.fuse_norm.{p}",
    "decoder.classifier.{p}",
)
MMSEG = _Scheme(
    "mmseg",
    re.compile(r"^backbone\.block(\d)\.(\d+)\.(.+)\.(weight|bias)$"),
    "backbone.block{s}.{b}.{part}.{p}",
    1,
    {
        "norm1": "norm1",
        "attn.q": "attn.q",
        "attn.kv": "attn.kv",
        "attn.proj": "attn.proj",
        "attn.sr": "attn.sr",
        "attn.sr_norm": "attn.norm",
        "norm2": "norm2",
        "ffn.fc1": "mlp.fc1",
        "ffn.dwconv": "mlp.dwconv.dwconv",
        "ffn.fc2": "mlp.fc2",
    },
    tuple(
        zip(
            _OURS_OTHERS,
            (
                "backbone.patch_embed{s}.proj.{p}",
                "backbone.patch_embed{s}.norm.{p}",
                "backbone.norm{s}.{p}",
                "decode_head.linear_c{s}.proj.{p}",
                "decode_head.linear_fuse.conv.{p}",
                "decode_head.linear_fuse.bn.{p}",
                "decode_head.linear_pred.{p}",
            ),
        )
    ),
)
# Hugging Face (the names save_pretrained writes); HF splits kv into key and value.
HF = _Scheme(
    "Hugging Face",
    re.compile(r"^segformer\.encoder\.block\.(\d)\.(\d+)\.(.+)\.(weight|bias)$"),
    "segformer.encoder.block.{s}.{b}.{part}.{p}",
    0,
    {
        "norm1": "layer_norm_1",
        "attn.q": "attention.self.query",
        "attn.kv": "attention.self.kv",
        "attn.proj": "attention.output.dense",
        "attn.sr": "attention.self.sr",
        "attn.sr_norm": "attention.self.layer_norm",
        "norm2": "layer_norm_2",
        "ffn.fc1": "mlp.dense1",
        "ffn.dwconv": "mlp.dwconv.dwconv",
        "ffn.fc2": "mlp.dense2",
    },
    tuple(
        zip(
            _OURS_OTHERS,
            (
                "segformer.encoder.patch_embeddings.{s}.proj.{p}",
                "segformer.encoder.patch_embeddings.{s}.layer_norm.{p}",
                "segformer.encoder.layer_norm.{s}.{p}",
                "decode_head.linear_c.{s}.proj.{p}",
                "decode_head.linear_fuse.{p}",
                "decode_head.batch_norm.{p}",
                "decode_head.classifier.{p}",
            ),
        )
    ),
)

# transformers >= 5 renames modules in memory; its save_pretrained writes the v4 names,
# but a state dict taken from a live v5 model has these.
_HF_V5_TO_V4 = [
    (r"^segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"^segformer\.stages\.(\d+)\.blocks\.", r"segformer.encoder.block.\1."),
    (r"^segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"attention\.q_proj\.", "attention.self.query."),
    (r"attention\.k_proj\.", "attention.self.key."),
    (r"attention\.v_proj\.", "attention.self.value."),
    (r"attention\.o_proj\.", "attention.output.dense."),
    (r"attention\.sequence_reduction\.sequence_reduction\.", "attention.self.sr."),
    (r"attention\.sequence_reduction\.layer_norm\.", "attention.self.layer_norm."),
    (r"mlp\.fc1\.", "mlp.dense1."),
    (r"mlp\.fc2\.", "mlp.dense2."),
    (r"layernorm_before\.", "layer_norm_1."),
    (r"layernorm_after\.", "layer_norm_2."),
    (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
]
# Keys that released checkpoints carry but inference never reads.
_IGNORED = re.compile(r"^(decode_head\.conv_seg\.|auxiliary_head\.|.*num_batches_tracked$)")


def _rename(
    state: Mapping[str, torch.Tensor], convert: Callable[[str], str | None], source: str
) -> StateDict:
    out, unknown = {}, []
    for key, value in state.items():
        new = convert(key)
        if new is not None:
            out[new] = value
        elif not _IGNORED.match(key):
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in {source} checkpoint: {_preview(unknown)}")
    return out


def _preview(keys: list[str], limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def mmseg_to_ours(state: Mapping[str, torch.Tensor]) -> StateDict:
    return _rename(state, MMSEG.to_ours, "mmseg")


def ours_to_mmseg(state: Mapping[str, torch.Tensor]) -> StateDict:
    return _rename(state, MMSEG.from_ours, "dynvit")


def hf_to_ours(state: Mapping[str, torch.Tensor]) -> StateDict:
    state = dict(state)
    if any(k.startswith("segformer.stages.") or "linear_projections" in k for k in state):
        renamed = {}
        for key, value in state.items():
            for pattern, repl in _HF_V5_TO_V4:
                key = re.sub(pattern, repl, key)
            renamed[key] = value
        state = renamed
    for key in [k for k in state if ".attention.self.key." in k]:
        value_key = key.replace(".attention.self.key.", ".attention.self.value.")
        if value_key not in state:
            raise CheckpointError(f"Hugging Face checkpoint has {key} but not {value_key}")
        state[key.replace(".key.", ".kv.")] = torch.cat([state.pop(key), state.pop(value_key)], 0)
    return _rename(state, HF.to_ours, "Hugging Face")


# ---------------------------------------------------------------------------
# Shape inference: which variant / class count does a state dict look like?
# ---------------------------------------------------------------------------
def describe_state(state: Mapping[str, torch.Tensor]) -> tuple[str, int | None]:
    """(variant name or a description, num_classes) inferred from our-named tensors."""
    dims = tuple(
        state[f"encoder.stages.{s}.patch_embed.proj.weight"].shape[0]
        for s in range(4)
        if f"encoder.stages.{s}.patch_embed.proj.weight" in state
    )
    depths = tuple(
        len({k.split(".")[4] for k in state if k.startswith(f"encoder.stages.{s}.blocks.")})
        for s in range(4)
    )
    classes = state.get("decoder.classifier.weight")
    num_classes = int(classes.shape[0]) if classes is not None else None
    for name, spec in VARIANTS.items():
        if spec.embed_dims == dims and spec.depths == depths:
            return name, num_classes
    return f"an unknown variant (embed dims {list(dims)}, depths {list(depths)})", num_classes


def load_state_into(model: SegFormer, state: StateDict, source: str = "checkpoint") -> SegFormer:
    """Strictly load our-named tensors into ``model`` with clear errors."""
    expected = model.state_dict()
    looks_like, classes = describe_state(state)
    wanted = f"SegFormer-{model.variant.name.upper()} with {model.config.num_classes} classes"
    found = (
        f"SegFormer-{looks_like.upper() if looks_like in VARIANTS else looks_like} "
        f"with {classes} classes"
    )
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_preview(unexpected)}")
        raise CheckpointError(
            f"{source} does not match {wanted} (it looks like {found}); " + "; ".join(parts)
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: shape mismatch for {key}: file has {list(tensor.shape)}, model wants "
                f"{list(expected[key].shape)}; the file looks like {found}, the model is {wanted}"
            )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model.eval()


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------
def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read safetensors file {path} (truncated or corrupt?): {exc}"
        ) from exc


def _untrusted_reason(exc: Exception) -> str:
    """What the weights-only unpickler refused, without its advice to turn the check off
    (the one thing not to do with a file from elsewhere).
    """
    found = re.search(r"(Unsupported [^.\n]*|GLOBAL [\w.]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _read_torch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    # A PyTorch file is a zip archive (PK..) or, in the legacy format, a pickle (0x80 + protocol).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise CheckpointError(
            f"{path} is corrupt or not a PyTorch checkpoint (starts with {magic!r})"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler met something else
        raise CheckpointError(
            f"refusing untrusted pickle: {path} holds more than tensors and plain containers "
            f"({_untrusted_reason(exc)}); nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read torch file {path} (truncated or corrupt?): {exc}"
        ) from exc
    except Exception as exc:  # any other refusal by the unpickler: still nothing was run
        raise CheckpointError(
            f"refusing untrusted pickle: {path} ({_untrusted_reason(exc)}); nothing in it was run"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def _to_ours(state: Mapping[str, torch.Tensor], path: Path) -> tuple[StateDict, str]:
    """Our-named tensors and the key scheme the file used."""
    keys = list(state)
    if any(k.startswith("encoder.stages.") for k in keys):
        return dict(state), "dynvit"
    if any(k.startswith("backbone.") for k in keys):
        return mmseg_to_ours(state), "mmseg"
    if any(k.startswith("segformer.") for k in keys):
        return hf_to_ours(state), "huggingface"
    raise CheckpointError(
        f"unknown checkpoint format in {path}: keys look like {_preview(keys, 3)}"
    )


def _metadata_from_state(state: StateDict, path: Path, **defaults) -> ModelMetadata:
    variant, classes = describe_state(state)
    if variant not in VARIANTS:
        raise CheckpointError(f"{path}: {variant} is not one of B0-B5")
    return ModelMetadata(variant=variant, num_classes=classes, **defaults)


def _hf_folder(path: Path) -> tuple[StateDict, ModelMetadata]:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path / 'config.json'}: {exc}") from exc
    if config.get("model_type") != "segformer":
        raise CheckpointError(
            f"{path} is a Hugging Face {config.get('model_type')!r} model, not segformer"
        )
    if (path / "model.safetensors").exists():
        raw, _ = _read_safetensors(path / "model.safetensors")
    elif (path / "pytorch_model.bin").exists():
        raw = _read_torch(path / "pytorch_model.bin")
    else:
        raise CheckpointError(
            f"{path} has config.json but neither model.safetensors nor pytorch_model.bin"
        )
    state = hf_to_ours(raw)
    id2label = config.get("id2label") or {}
    names = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    # HF's SegformerLayer norms use LayerNorm's default eps (see ModelConfig.block_norm_eps).
    meta = _metadata_from_state(
        state,
        path,
        class_names=names,
        block_norm_eps=1e-5,
        provenance={"source": str(path), "format": "huggingface"},
    )
    return state, meta


def read_checkpoint(path: str | Path) -> tuple[StateDict, ModelMetadata]:
    """Read any supported checkpoint into our key names plus metadata."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / "config.json").exists():
            return _hf_folder(path)
        raise CheckpointError(
            f"{path} is a folder without config.json; not a Hugging Face model folder"
        )
    with path.open("rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors":
        raw, header = _read_safetensors(path)
        if header.get("format_tag") == FORMAT_TAG:
            try:
                meta = ModelMetadata.from_dict(json.loads(header["dynvit"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(
                    f"{path}: bad dynvit metadata in the safetensors header: {exc!r}"
                ) from exc
            return _to_ours(raw, path)[0], meta
        state, scheme = _to_ours(raw, path)
        return state, _metadata_from_state(
            state, path, provenance={"source": str(path), "format": scheme}
        )
    if head[:2] == b"PK" or path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state, scheme = _to_ours(_read_torch(path), path)
        return state, _metadata_from_state(
            state, path, provenance={"source": str(path), "format": scheme}
        )
    raise CheckpointError(
        f"unknown checkpoint format: {path} (expected a Hugging Face folder, "
        ".safetensors, or a torch .pth/.pt/.bin file)"
    )


def load_model(
    path: str | Path, expect_variant: str | None = None, expect_classes: int | None = None
) -> tuple[SegFormer, ModelMetadata]:
    """Read a checkpoint and build the matching SegFormer in eval mode."""
    state, meta = read_checkpoint(path)
    if expect_variant is not None:
        meta.variant = expect_variant
    if expect_classes is not None:
        meta.num_classes = expect_classes
    model = SegFormer(meta.model_config())
    return load_state_into(model, state, source=str(path)), meta


def save_checkpoint(
    path: str | Path, model: SegFormer, metadata: ModelMetadata, dtype: torch.dtype = torch.float16
) -> Path:
    """Write the project's format: safetensors weights plus JSON metadata in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    header = {"format_tag": FORMAT_TAG, "dynvit": json.dumps(asdict(metadata))}
    save_file(state, str(path), metadata=header)
    return path
