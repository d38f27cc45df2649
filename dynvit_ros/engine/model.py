# SPDX-License-Identifier: Apache-2.0
"""SegFormer (MiT encoder + all-MLP decoder) with first-class skipping.

One ``nn.Module`` per concept of the SegFormer paper. Every variant B0-B5 comes
from ``VARIANTS`` and ``build_segformer``. A :class:`~dynvit_ros.engine.skip.SkipConfig`
is passed to ``forward``; skipped work is never computed.

Inference-oriented choices (all exact up to float rounding):
- tokens stay in (B, N, C) order, and the 2-D views the convolutions need are
  channels-last views of the same memory, so no transposed copies are made;
- attention uses ``scaled_dot_product_attention`` and a fused key/value linear;
- the decoder is re-associated: the 1x1 fuse and the eval-mode batch norm are
  linear, and so is bilinear upsampling per channel, so each stage's MLP is
  composed with its slice of the fuse weights and applied at the stage's own
  resolution, then upsampled and summed. Dropping a stage drops one term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from dynvit_ros.engine.masks import logits_to_masks
from dynvit_ros.engine.skip import FULL, BlockSkip, SkipConfig


@dataclass(frozen=True)
class VariantSpec:
    name: str
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    decoder_dim: int
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)


_WIDE = (64, 128, 320, 512)
VARIANTS: dict[str, VariantSpec] = {
    "b0": VariantSpec("b0", (32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": VariantSpec("b1", _WIDE, (2, 2, 2, 2), 256),
    "b2": VariantSpec("b2", _WIDE, (3, 4, 6, 3), 768),
    "b3": VariantSpec("b3", _WIDE, (3, 4, 18, 3), 768),
    "b4": VariantSpec("b4", _WIDE, (3, 8, 27, 3), 768),
    "b5": VariantSpec("b5", _WIDE, (3, 6, 40, 3), 768),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to instantiate a SegFormer."""

    variant: VariantSpec
    num_classes: int
    in_channels: int = 3
    # NVlabs/mmseg use eps 1e-6 in the transformer blocks' norms; Hugging Face's
    # SegformerLayer uses the LayerNorm default 1e-5 there (its loader sets
    # block_norm_eps to match). Both use 1e-5 in the patch embedding and
    # spatial-reduction norms.
    block_norm_eps: float = 1e-6
    embed_norm_eps: float = 1e-5
    bn_eps: float = 1e-5


def stage_sizes(height: int, width: int, spec: VariantSpec) -> list[tuple[int, int]]:
    """Token grid of each stage for an input size (as the strided convs produce it)."""
    sizes = []
    for patch, stride in zip(spec.patch_sizes, spec.strides):
        pad = patch // 2
        height = (height + 2 * pad - patch) // stride + 1
        width = (width + 2 * pad - patch) // stride + 1
        sizes.append((height, width))
    return sizes


# The encoder's total stride (4 * 2 * 2 * 2 in every variant).
GRID = 32


def scaled_size(height: int, width: int, scale: float, grid: int = GRID) -> tuple[int, int]:
    """Input size after a level's ``input_scale``: Python ints in, Python ints out.

    A scaled input is snapped to the nearest multiple of ``grid`` (at least one
    cell), so that every stage's token grid tiles the image exactly. Off the grid
    the strided, padded convolutions give each stage a grid that overhangs the
    image by a different amount, the decoder's upsampling then misaligns the
    stages, and a model trained on grid-aligned crops loses accuracy (CamVid val,
    0.6 of 352x480: 211x288 58.8, 224x288 61.5; benchmarks/bench_geometry.py).
    Scale 1 keeps the model's own input size. Callers pass plain ints (see
    :meth:`SegFormer.forward`): a level's geometry is decided once from the static
    input size, never traced as tensor arithmetic.
    """
    if scale == 1.0:
        return height, width

    def snap(side: int) -> int:
        return max(grid, int(side * scale / grid + 0.5) * grid)

    return snap(height), snap(width)


# The stride-32 stage and the 8x8 spatial reduction of stage 1 need at least
# 32 pixels; smaller inputs are zero-padded (bottom/right) and the logits cropped.
MIN_INPUT = 32


def padded_size(height: int, width: int) -> tuple[int, int]:
    return max(height, MIN_INPUT), max(width, MIN_INPUT)


def _as_image(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, H, W) channels-last view of the same memory."""
    return tokens.unflatten(1, (height, width)).permute(0, 3, 1, 2)


def _as_tokens(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C); free when the image is channels-last."""
    return image.permute(0, 2, 3, 1).flatten(1, 2)


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch merging: strided conv (7/4 then 3/2) + LayerNorm."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, stride: int, eps: float):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride, patch_size // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(image)
        height, width = x.shape[-2:]
        return self.norm(_as_tokens(x)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced sequence."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.sr_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, dim = x.shape
        heads = self.num_heads
        q = self.q(x).view(batch, tokens, heads, dim // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.sr_norm(_as_tokens(self.sr(_as_image(x, height, width))))
        kv = self.kv(x).view(batch, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv (positional information) -> GELU -> linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, height: int, width: int, skip_dwconv: bool) -> torch.Tensor:
        x = self.fc1(x)
        if not skip_dwconv:
            x = _as_tokens(self.dwconv(_as_image(x, height, width)))
        return self.fc2(F.gelu(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + Mix-FFN(norm(x))."""

    def __init__(
        self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, config: ModelConfig
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=config.block_norm_eps)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio, config.embed_norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=config.block_norm_eps)
        self.ffn = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, height: int, width: int, skip: BlockSkip) -> torch.Tensor:
        if skip.whole:
            return x
        if not skip.attention:
            x = x + self.attn(self.norm1(x), height, width)
        return x + self.ffn(self.norm2(x), height, width, skip.ffn_dwconv)


class MiTStage(nn.Module):
    """One Mix Transformer stage: patch merging, N blocks, final LayerNorm."""

    def __init__(self, index: int, in_channels: int, config: ModelConfig):
        super().__init__()
        spec = config.variant
        dim = spec.embed_dims[index]
        self.index = index
        self.patch_embed = OverlapPatchEmbed(
            in_channels, dim, spec.patch_sizes[index], spec.strides[index], config.embed_norm_eps
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, spec.num_heads[index], spec.sr_ratios[index], spec.mlp_ratio, config
            )
            for _ in range(spec.depths[index])
        )
        self.norm = nn.LayerNorm(dim, eps=config.block_norm_eps)

    def forward(self, image: torch.Tensor, skip: SkipConfig) -> tuple[torch.Tensor, int, int]:
        x, height, width = self.patch_embed(image)
        for i, block in enumerate(self.blocks):
            x = block(x, height, width, skip.block(self.index, i))
        return self.norm(x), height, width


class MixTransformerEncoder(nn.Module):
    """Hierarchical encoder; returns each stage's tokens and grid size."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dims = config.variant.embed_dims
        in_dims = (config.in_channels,) + dims[:-1]
        self.stages = nn.ModuleList(MiTStage(i, in_dims[i], config) for i in range(4))

    def forward(
        self, image: torch.Tensor, skip: SkipConfig
    ) -> list[tuple[torch.Tensor, int, int]]:
        features = []
        for stage in self.stages[: skip.encoder_stages]:
            tokens, height, width = stage(image, skip)
            features.append((tokens, height, width))
            image = _as_image(tokens, height, width)
        return features


class AllMLPDecoder(nn.Module):
    """SegFormer's all-MLP decoder, evaluated in re-associated form.

    Parameters are stored as the paper defines them (per-stage MLP to
    ``decoder_dim``, 1x1 fuse over the concatenation [c4, c3, c2, c1], batch
    norm, ReLU, 1x1 classifier), so checkpoints map one to one.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.variant.decoder_dim
        self.stage_mlps = nn.ModuleList(nn.Linear(c, dim) for c in config.variant.embed_dims)
        self.fuse = nn.Conv2d(4 * dim, dim, 1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(dim, eps=config.bn_eps)
        self.classifier = nn.Conv2d(dim, config.num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        self._cache: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _fuse_slice(self, stage: int) -> torch.Tensor:
        dim = self.fuse.out_channels
        offset = (3 - stage) * dim  # the reference concatenates deepest stage first
        return self.fuse.weight[:, offset : offset + dim, 0, 0]

    def composed(self, fold_norm: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per stage (weight, bias) of fuse_slice @ mlp.

        With ``fold_norm`` the eval-mode batch norm's scale is folded into
        every term and its shift is appended as a final ``(None, shift)``.
        """
        terms = []
        for stage, mlp in enumerate(self.stage_mlps):
            w_fuse = self._fuse_slice(stage)
            terms.append((w_fuse @ mlp.weight, w_fuse @ mlp.bias))
        if fold_norm:
            norm = self.fuse_norm
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            terms = [(scale[:, None] * w, scale * b) for w, b in terms]
            shift = norm.bias - norm.running_mean * scale
            terms.append((None, shift))
        return terms

    def _folded_terms(self) -> list:
        key = tuple((p.data_ptr(), p._version) for p in self._folding_inputs())
        if self._cache is None or self._cache[0] != key:
            # Normal tensors even when first called under inference_mode, so that a
            # later eval-mode forward with autograd on can still use the cache.
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (key, self.composed(fold_norm=True))
        return self._cache[1]

    def _folding_inputs(self):
        yield from self.stage_mlps.parameters()
        yield self.fuse.weight
        yield from (
            self.fuse_norm.weight,
            self.fuse_norm.bias,
            self.fuse_norm.running_mean,
            self.fuse_norm.running_var,
        )

    def forward(
        self,
        features: list[tuple[torch.Tensor, int, int]],
        target_hw: tuple[int, int],
        skip: SkipConfig,
    ) -> torch.Tensor:
        folded = not self.training
        terms = self._folded_terms() if folded else self.composed(fold_norm=False)
        fused = None
        for stage in skip.decoder_stages:
            tokens, height, width = features[stage]
            weight, bias = terms[stage]
            term = _as_image(F.linear(tokens, weight, bias), height, width)
            if (height, width) != target_hw:
                term = F.interpolate(term, size=target_hw, mode="bilinear", align_corners=False)
            fused = term if fused is None else fused + term
        if folded:
            fused = fused + terms[-1][1][:, None, None]
        else:
            fused = self.fuse_norm(fused)
        fused = self.dropout(F.relu(fused))
        logits = F.linear(
            _as_tokens(fused), self.classifier.weight[:, :, 0, 0], self.classifier.bias
        )
        return _as_image(logits, *target_hw)


class SegFormer(nn.Module):
    """SegFormer for semantic segmentation with a per-call skip configuration."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = MixTransformerEncoder(config)
        self.decoder = AllMLPDecoder(config)

    @property
    def variant(self) -> VariantSpec:
        return self.config.variant

    def forward(self, images: torch.Tensor, skip: SkipConfig = FULL) -> torch.Tensor:
        """Normalised (B, 3, H, W) images -> logits at the fuse resolution."""
        # Python ints: under a tracer (ONNX export) shape entries are 0-d tensors, and the
        # level's geometry (resize, padding, fuse size) must be decided here, not traced:
        # an exported graph has one fixed input size.
        height, width = (int(v) for v in images.shape[-2:])
        scaled = scaled_size(height, width, skip.input_scale)
        if scaled != (height, width):
            images = F.interpolate(images, size=scaled, mode="bilinear", align_corners=False)
        padded = padded_size(*scaled)
        if padded != scaled:
            images = F.pad(images, (0, padded[1] - scaled[1], 0, padded[0] - scaled[0]))
        features = self.encoder(images, skip)
        target_hw = stage_sizes(*padded, self.variant)[skip.fuse_level]
        logits = self.decoder(features, target_hw, skip)
        if padded != scaled:
            valid = stage_sizes(*scaled, self.variant)[skip.fuse_level]
            logits = logits[:, :, : valid[0], : valid[1]]
        return logits

    @torch.inference_mode()
    def predict(
        self, images: torch.Tensor, skip: SkipConfig = FULL, upsample: str = "logits"
    ) -> np.ndarray:
        """Normalised images -> (B, H, W) uint8 class ids at the input's own size."""
        return logits_to_masks(self(images, skip), images.shape[-2:], upsample)


def build_segformer(variant: str | VariantSpec, num_classes: int, **overrides) -> SegFormer:
    """Factory for every variant: ``build_segformer("b2", 150)``."""
    if isinstance(variant, str):
        try:
            variant = VARIANTS[variant.lower()]
        except KeyError:
            raise ValueError(
                f"unknown SegFormer variant {variant!r}; known: {sorted(VARIANTS)}"
            ) from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return SegFormer(ModelConfig(variant=variant, num_classes=num_classes, **overrides))
