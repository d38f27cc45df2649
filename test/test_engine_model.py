# SPDX-License-Identifier: Apache-2.0
"""The SegFormer engine against Hugging Face transformers, and skipping as real savings."""

import json

import pytest
import torch

from dynvit_ros.engine.checkpoint import load_model, ours_to_mmseg, read_checkpoint
from dynvit_ros.engine.levels import candidate_configs
from dynvit_ros.engine.macs import PAPER_ADE20K_GMACS, OpKind, count_layers, mac_report, total_macs
from dynvit_ros.engine.model import VARIANTS, build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig

transformers = pytest.importorskip(
    "transformers", reason="transformers is the test reference (pip install transformers)"
)


def _hf_model(variant: str, num_labels: int = 19):
    spec = VARIANTS[variant]
    config = transformers.SegformerConfig(
        hidden_sizes=list(spec.embed_dims),
        depths=list(spec.depths),
        decoder_hidden_size=spec.decoder_dim,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is exercised
        bn = model.decode_head.batch_norm
        bn.running_mean.normal_(0, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1, 0.2)
        bn.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module", params=["b0", "b2"])
def hf_folder(request, tmp_path_factory):
    model = _hf_model(request.param)
    folder = tmp_path_factory.mktemp(f"hf_{request.param}")
    model.save_pretrained(folder)
    return request.param, model, folder


def test_logits_match_hf_after_loading_hf_folder(hf_folder):
    variant, hf, folder = hf_folder
    ours, meta = load_model(folder)
    assert meta.variant == variant and meta.num_classes == 19
    x = torch.randn(1, 3, 256, 320)
    with torch.inference_mode():
        diff = (hf(pixel_values=x).logits - ours(x)).abs().max().item()
    assert diff < 1e-4


def test_logits_match_hf_after_loading_mmseg_keys(hf_folder, tmp_path):
    variant, hf, folder = hf_folder
    state, _ = read_checkpoint(folder)
    mmseg = ours_to_mmseg(state)
    assert any(k.startswith("backbone.block1.0.attn.kv") for k in mmseg)
    path = tmp_path / "segformer_mmseg.pth"
    torch.save({"meta": {"note": "mmseg style"}, "state_dict": mmseg}, path)
    ours, meta = load_model(path)
    assert meta.variant == variant
    x = torch.randn(1, 3, 193, 257)  # odd sizes go through the strided convs unchanged
    with torch.inference_mode():
        diff = (hf(pixel_values=x).logits - ours(x)).abs().max().item()
    assert diff < 1e-4


@pytest.mark.parametrize("size", [(97, 131), (24, 24), (33, 1), (48, 40)])
def test_every_candidate_runs_on_odd_and_tiny_sizes_and_returns_input_sized_masks(size):
    model = build_segformer("b0", 5).eval()
    image = torch.randn(1, 3, *size)
    for config in candidate_configs(model.variant):
        mask = model.predict(image, config)
        assert mask.shape == (1, *size), config.name
        assert total_macs(count_layers(model.variant, 5, size, config)) > 0


def test_padding_small_inputs_does_not_change_the_logits_of_large_ones():
    model = build_segformer("b0", 5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert model(x).shape == (1, 5, 16, 16)
        assert model(x[..., :20, :20]).shape == (1, 5, 5, 5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_factory_builds_every_variant_from_the_table(variant):
    spec = VARIANTS[variant]
    model = build_segformer(variant, 3)
    assert [len(stage.blocks) for stage in model.encoder.stages] == list(spec.depths)
    assert [stage.patch_embed.proj.out_channels for stage in model.encoder.stages] == list(
        spec.embed_dims
    )
    assert model.decoder.fuse.out_channels == spec.decoder_dim


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown SegFormer variant 'b9'"):
        build_segformer("b9", 3)


def _calls(model, config, x):
    """Names of the modules that actually ran."""
    ran = []
    handles = [
        m.register_forward_hook(lambda mod, i, o, n=name: ran.append(n))
        for name, m in model.named_modules()
        if name
    ]
    with torch.inference_mode():
        model(x, config)
    for h in handles:
        h.remove()
    return set(ran)


def test_skipped_work_is_not_computed():
    model = build_segformer("b0", 5).eval()
    x = torch.randn(1, 3, 64, 96)
    config = SkipConfig(
        skip_attention=[(0, 1)], skip_dwconv=[(1, 0)], skip_block=[(2, 1)], decoder_drop=[3]
    )
    ran = _calls(model, config, x)
    assert "encoder.stages.0.blocks.1.attn" not in ran
    assert "encoder.stages.0.blocks.1.ffn" in ran
    assert "encoder.stages.1.blocks.0.ffn.dwconv" not in ran
    assert "encoder.stages.1.blocks.0.attn" in ran
    assert not any(n.startswith("encoder.stages.2.blocks.1.") for n in ran)
    # Dropping the deepest stage from the decoder also ends the encoder early.
    assert not any(n.startswith("encoder.stages.3") for n in ran)
    full = _calls(model, FULL, x)
    assert "encoder.stages.3.norm" in full


def test_mac_counter_sees_the_same_savings():
    spec = VARIANTS["b0"]
    full = total_macs(count_layers(spec, 11, (240, 320)))
    config = SkipConfig(
        skip_attention=[(0, 1)], skip_dwconv=[(1, 0)], skip_block=[(2, 1)], decoder_drop=[3]
    )
    layers = count_layers(spec, 11, (240, 320), config)
    names = {layer.name for layer in layers}
    assert "stage1.block1.attn.q" not in names and "stage2.block0.ffn.dwconv" not in names
    assert not any(n.startswith("stage4") or n.startswith("stage3.block1") for n in names)
    assert total_macs(layers) < full
    half = total_macs(count_layers(spec, 11, (240, 320), SkipConfig(input_scale=0.5)))
    assert half < 0.3 * full


def test_executed_decoder_is_cheaper_than_reference():
    report = mac_report(VARIANTS["b2"], 150, (512, 512))
    assert report.executed_gmacs < 0.5 * report.reference_gmacs
    fuse = [layer for layer in report.reference if layer.name == "decoder.fuse"]
    assert fuse and fuse[0].kind == OpKind.CONV and fuse[0].k == 4 * 768


@pytest.mark.parametrize("variant", sorted(PAPER_ADE20K_GMACS))
def test_mac_counter_matches_segformer_paper(variant):
    gmacs, size = PAPER_ADE20K_GMACS[variant]
    report = mac_report(VARIANTS[variant], 150, (size, size))
    assert abs(report.reference_gmacs / gmacs - 1) < 0.05


def test_per_layer_list_is_consumable():
    layers = mac_report(VARIANTS["b0"], 11, (240, 320)).executed
    row = json.loads(json.dumps(layers[0].as_dict()))
    assert {
        "kind",
        "macs",
        "weight_bytes",
        "act_in_bytes",
        "act_out_bytes",
        "in_shape",
        "out_shape",
    } <= set(row)
    dw = next(layer for layer in layers if layer.kind == OpKind.DWCONV)
    assert dw.n == 1 and dw.k == 9 and dw.groups == 128
