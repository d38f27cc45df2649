# SPDX-License-Identifier: Apache-2.0
"""Analytical MAC and byte counter, per layer, per skip configuration and input size.

Every layer with multiply-accumulates is described as ``groups`` independent
GEMMs of ``m x n`` outputs with reduction length ``k`` (a depthwise conv is
``groups = channels, n = 1, k = 9``; attention is ``groups = heads``), so
latency models can pad those dimensions to their hardware's vector width.

Two lists exist for the same configuration and input:
- ``reference``: the computation as the SegFormer paper defines it (per-stage
  MLP, upsample, concatenate, 1x1 fuse at the fuse stride, batch norm, ReLU);
- ``executed``: what :mod:`dynvit_ros.engine.model` actually runs (fused key/value,
  the re-associated decoder with the norm folded in).

The SegFormer paper's GFLOPs column counts every multiply-accumulate of the
reference computation (convolutions, linear layers and the attention matmuls;
no bias, norm or activation work): ``MacReport.reference_gmacs`` reproduces
it. Its ADE20K figures are at 512x512, except B5's at 640x640.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dynvit_ros.engine.model import VariantSpec, padded_size, scaled_size, stage_sizes
from dynvit_ros.engine.skip import FULL, SkipConfig

# SegFormer paper, Table 1: ADE20K GMACs per variant and the input side they were counted at.
PAPER_ADE20K_GMACS = {
    "b0": (8.4, 512),
    "b1": (15.9, 512),
    "b2": (62.4, 512),
    "b3": (79.0, 512),
    "b4": (95.7, 512),
    "b5": (183.3, 640),
}


class OpKind(str, Enum):
    CONV = "conv"  # dense convolution (patch embeddings, spatial reduction, 1x1 fuse)
    DWCONV = "dwconv"  # depthwise 3x3 in Mix-FFN
    LINEAR = "linear"  # token-wise linear layers and 1x1 convs run as GEMMs
    ATTN_MATMUL = "attn_matmul"  # QK^T and attention x V
    NORM = "norm"  # LayerNorm / BatchNorm
    SOFTMAX = "softmax"
    ACT = "act"  # GELU / ReLU
    RESIZE = "resize"  # bilinear interpolation
    ADD = "add"  # residual and decoder sums, bias adds

    def __str__(self) -> str:
        return self.value


GEMM_KINDS = frozenset({OpKind.CONV, OpKind.DWCONV, OpKind.LINEAR, OpKind.ATTN_MATMUL})


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: OpKind
    groups: int = 1
    m: int = 0  # output positions (tokens / pixels)
    n: int = 0  # output channels per group
    k: int = 0  # reduction length per output
    elements: int = 0  # output elements (for element-wise kinds)
    weight_elems: int = 0
    act_in_elems: int = 0
    act_out_elems: int = 0
    bias: bool = False
    in_shape: tuple = ()
    out_shape: tuple = ()
    bytes_per_element: int = 4

    @property
    def macs(self) -> int:
        return self.groups * self.m * self.n * self.k if self.kind in GEMM_KINDS else 0

    @property
    def weight_bytes(self) -> int:
        return self.weight_elems * self.bytes_per_element

    @property
    def act_in_bytes(self) -> int:
        return self.act_in_elems * self.bytes_per_element

    @property
    def act_out_bytes(self) -> int:
        return self.act_out_elems * self.bytes_per_element

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": str(self.kind),
            "groups": self.groups,
            "m": self.m,
            "n": self.n,
            "k": self.k,
            "macs": self.macs,
            "weight_bytes": self.weight_bytes,
            "act_in_bytes": self.act_in_bytes,
            "act_out_bytes": self.act_out_bytes,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
        }


class _Builder:
    def __init__(self, bytes_per_element: int):
        self.layers: list[LayerCost] = []
        self.bpe = bytes_per_element

    def gemm(
        self,
        name,
        kind,
        m,
        n,
        k,
        groups=1,
        bias=False,
        weights=True,
        in_elems=None,
        in_shape=(),
        out_shape=(),
    ):
        weight = (groups * n * k + (groups * n if bias else 0)) if weights else 0
        self.layers.append(
            LayerCost(
                name,
                kind,
                groups,
                m,
                n,
                k,
                elements=groups * m * n,
                weight_elems=weight,
                act_in_elems=in_elems
                if in_elems is not None
                else groups * m * k
                if kind != OpKind.CONV
                else 0,
                act_out_elems=groups * m * n,
                bias=bias,
                in_shape=in_shape,
                out_shape=out_shape,
                bytes_per_element=self.bpe,
            )
        )

    def conv(self, name, in_ch, in_hw, out_ch, out_hw, kernel, groups=1, bias=True):
        kind = OpKind.DWCONV if groups > 1 else OpKind.CONV
        m = out_hw[0] * out_hw[1]
        self.gemm(
            name,
            kind,
            m,
            out_ch // groups,
            (in_ch // groups) * kernel * kernel,
            groups,
            bias,
            in_elems=in_ch * in_hw[0] * in_hw[1],
            in_shape=(in_ch, *in_hw),
            out_shape=(out_ch, *out_hw),
        )

    def linear(self, name, tokens, c_in, c_out, bias=True):
        self.gemm(
            name,
            OpKind.LINEAR,
            tokens,
            c_out,
            c_in,
            1,
            bias,
            in_shape=(tokens, c_in),
            out_shape=(tokens, c_out),
        )

    def elementwise(self, name, kind, elements, inputs=1, params=0, shape=()):
        self.layers.append(
            LayerCost(
                name,
                kind,
                elements=elements,
                weight_elems=params,
                act_in_elems=inputs * elements,
                act_out_elems=elements,
                in_shape=shape,
                out_shape=shape,
                bytes_per_element=self.bpe,
            )
        )


def count_layers(
    spec: VariantSpec,
    num_classes: int,
    input_hw: tuple[int, int],
    skip: SkipConfig = FULL,
    executed: bool = True,
    bytes_per_element: int = 4,
) -> list[LayerCost]:
    """Per-layer costs of one forward pass (batch 1) for ``skip`` at ``input_hw``."""
    skip.validate(spec.depths)
    b = _Builder(bytes_per_element)
    height, width = scaled_size(*input_hw, skip.input_scale)
    if (height, width) != tuple(input_hw):
        b.elementwise("input.resize", OpKind.RESIZE, 3 * height * width, shape=(3, height, width))
    height, width = padded_size(height, width)
    sizes = stage_sizes(height, width, spec)
    in_ch, in_hw = 3, (height, width)
    for s in range(skip.encoder_stages):
        _encoder_stage(b, spec, s, in_ch, in_hw, sizes[s], skip, executed)
        in_ch, in_hw = spec.embed_dims[s], sizes[s]
    _decoder(b, spec, num_classes, sizes, skip, executed)
    return b.layers


def _encoder_stage(b: _Builder, spec, s, in_ch, in_hw, hw, skip, executed):
    dim, heads, sr = spec.embed_dims[s], spec.num_heads[s], spec.sr_ratios[s]
    tokens = hw[0] * hw[1]
    p = f"stage{s + 1}"
    b.conv(f"{p}.patch_embed.proj", in_ch, in_hw, dim, hw, spec.patch_sizes[s])
    b.elementwise(f"{p}.patch_embed.norm", OpKind.NORM, tokens * dim, params=2 * dim)
    hidden = dim * spec.mlp_ratio
    for i in range(spec.depths[s]):
        blk = skip.block(s, i)
        if blk.whole:
            continue
        q = f"{p}.block{i}"
        if not blk.attention:
            b.elementwise(f"{q}.norm1", OpKind.NORM, tokens * dim, params=2 * dim)
            b.linear(f"{q}.attn.q", tokens, dim, dim)
            kv_tokens = tokens
            if sr > 1:
                red = (hw[0] // sr, hw[1] // sr)
                kv_tokens = red[0] * red[1]
                b.conv(f"{q}.attn.sr", dim, hw, dim, red, sr)
                b.elementwise(f"{q}.attn.sr_norm", OpKind.NORM, kv_tokens * dim, params=2 * dim)
            if executed:
                b.linear(f"{q}.attn.kv", kv_tokens, dim, 2 * dim)
            else:
                b.linear(f"{q}.attn.key", kv_tokens, dim, dim)
                b.linear(f"{q}.attn.value", kv_tokens, dim, dim)
            head_dim = dim // heads
            b.gemm(
                f"{q}.attn.scores",
                OpKind.ATTN_MATMUL,
                tokens,
                kv_tokens,
                head_dim,
                heads,
                weights=False,
                in_elems=(tokens + kv_tokens) * dim,
            )
            b.elementwise(f"{q}.attn.softmax", OpKind.SOFTMAX, heads * tokens * kv_tokens)
            b.gemm(
                f"{q}.attn.context",
                OpKind.ATTN_MATMUL,
                tokens,
                head_dim,
                kv_tokens,
                heads,
                weights=False,
                in_elems=heads * tokens * kv_tokens + kv_tokens * dim,
            )
            b.linear(f"{q}.attn.proj", tokens, dim, dim)
            b.elementwise(f"{q}.attn.residual", OpKind.ADD, tokens * dim, inputs=2)
        b.elementwise(f"{q}.norm2", OpKind.NORM, tokens * dim, params=2 * dim)
        b.linear(f"{q}.ffn.fc1", tokens, dim, hidden)
        if not blk.ffn_dwconv:
            b.conv(f"{q}.ffn.dwconv", hidden, hw, hidden, hw, 3, groups=hidden)
        b.elementwise(f"{q}.ffn.gelu", OpKind.ACT, tokens * hidden)
        b.linear(f"{q}.ffn.fc2", tokens, hidden, dim)
        b.elementwise(f"{q}.ffn.residual", OpKind.ADD, tokens * dim, inputs=2)
    b.elementwise(f"{p}.norm", OpKind.NORM, tokens * dim, params=2 * dim)


def _decoder(b: _Builder, spec, num_classes, sizes, skip: SkipConfig, executed: bool):
    dim = spec.decoder_dim
    target = sizes[skip.fuse_level]
    t = target[0] * target[1]
    kept = skip.decoder_stages
    for s in kept:
        tokens = sizes[s][0] * sizes[s][1]
        # Executed: the stage MLP composed with its fuse slice (and the folded norm), same shape.
        b.linear(
            f"decoder.stage{s + 1}.{'mlp_fuse' if executed else 'mlp'}",
            tokens,
            spec.embed_dims[s],
            dim,
        )
        if sizes[s] != target:
            b.elementwise(
                f"decoder.stage{s + 1}.resize", OpKind.RESIZE, dim * t, shape=(dim, *target)
            )
        if executed and s != kept[0]:
            b.elementwise(f"decoder.stage{s + 1}.sum", OpKind.ADD, dim * t, inputs=2)
    if executed:
        b.elementwise("decoder.norm_shift", OpKind.ADD, dim * t, params=dim)
    else:
        b.conv("decoder.fuse", dim * len(kept), target, dim, target, 1, bias=False)
        b.elementwise("decoder.fuse_norm", OpKind.NORM, dim * t, params=2 * dim)
    b.elementwise("decoder.relu", OpKind.ACT, dim * t)
    if executed:
        b.linear("decoder.classifier", t, dim, num_classes)
    else:
        b.conv("decoder.classifier", dim, target, num_classes, target, 1)


def total_macs(layers: list[LayerCost]) -> int:
    return sum(layer.macs for layer in layers)


@dataclass(frozen=True)
class MacReport:
    reference_gmacs: float  # the reference computation, as the paper counts it
    executed_gmacs: float  # what this implementation runs
    weight_mbytes: float
    reference: tuple[LayerCost, ...]
    executed: tuple[LayerCost, ...]


def mac_report(
    spec: VariantSpec,
    num_classes: int,
    input_hw: tuple[int, int],
    skip: SkipConfig = FULL,
    bytes_per_element: int = 4,
) -> MacReport:
    reference = count_layers(
        spec, num_classes, input_hw, skip, executed=False, bytes_per_element=bytes_per_element
    )
    executed = count_layers(
        spec, num_classes, input_hw, skip, executed=True, bytes_per_element=bytes_per_element
    )
    return MacReport(
        reference_gmacs=total_macs(reference) / 1e9,
        executed_gmacs=total_macs(executed) / 1e9,
        weight_mbytes=sum(layer.weight_bytes for layer in reference) / 1e6,
        reference=tuple(reference),
        executed=tuple(executed),
    )
