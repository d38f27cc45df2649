# SPDX-License-Identifier: Apache-2.0
"""Loading latency models by built-in name, module:Class path and entry point; clear errors."""

import sys
import textwrap

import pytest

from dynvit_ros.engine.model import build_segformer
from dynvit_ros.engine.skip import FULL, SkipConfig
from dynvit_ros.latency import base
from dynvit_ros.latency.accelerator import AcceleratorLatencyModel
from dynvit_ros.latency.base import (
    LatencyContext,
    LatencyModel,
    LatencyModelError,
    load_latency_model,
)

LEVELS = [FULL, SkipConfig(name="lite", decoder_drop=[3], input_scale=0.5)]


@pytest.fixture(scope="module")
def context():
    return LatencyContext(
        model=build_segformer("b0", 19),
        configs=LEVELS,
        input_hw=(120, 160),
        options={"hardware": "jetson_orin"},
        model_id="test",
    )


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("lat_plugin_")]:
        del sys.modules[name]


def write_plugin(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_builtin_name_and_module_path(context):
    by_name = load_latency_model("accelerator", context)
    by_path = load_latency_model("dynvit_ros.latency.accelerator:AcceleratorLatencyModel", context)
    assert isinstance(by_name, AcceleratorLatencyModel) and isinstance(
        by_path, AcceleratorLatencyModel
    )
    assert by_name.name == "accelerator" and "Orin" in by_name.target
    full, lite = by_name.predict_all(LEVELS, (120, 160))
    assert 0 < lite < full
    assert [by_name.predict(c, (120, 160)) for c in LEVELS] == [full, lite]
    assert by_path.predict(FULL, (120, 160)) == full


def test_third_party_plugin_by_path(context, plugin_dir):
    write_plugin(
        plugin_dir,
        "lat_plugin_ok",
        """
        from dynvit_ros.latency.base import LatencyModel
        class Constant(LatencyModel):
            name = "constant"
            target = "nowhere"
            def predict(self, config, input_hw):
                return 7.0 * len(self.context.configs)
    """,
    )
    model = load_latency_model("lat_plugin_ok:Constant", context)
    assert isinstance(model, LatencyModel)
    assert model.predict_all(LEVELS, (120, 160)) == [14.0, 14.0]
    model.observe(FULL, (120, 160), 3.0)  # the default observe learns nothing and must not fail


def test_entry_point_discovery(context, monkeypatch):
    class FakeEntryPoint:
        value = "dynvit_ros.latency.accelerator:AcceleratorLatencyModel"

        def load(self):
            return AcceleratorLatencyModel

    monkeypatch.setattr(base, "_entry_points", lambda: {"my-chip": FakeEntryPoint()})
    assert "my-chip" in base.available_models()
    assert isinstance(load_latency_model("my-chip", context), AcceleratorLatencyModel)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no-such-model", "unknown latency model 'no-such-model'.*accelerator.*profiled"),
        ("", "non-empty"),
        ("lat_plugin_missing_module:Thing", "cannot import latency model module"),
        ("dynvit_ros.latency.base:NoSuchClass", "has no attribute 'NoSuchClass'"),
        ("dynvit_ros.latency.base:", "must look like"),
    ],
)
def test_unknown_names_are_clear_errors(context, spec, message):
    with pytest.raises(LatencyModelError, match=message):
        load_latency_model(spec, context)


def test_broken_plugins_are_clear_errors(context, plugin_dir):
    write_plugin(plugin_dir, "lat_plugin_import", "raise RuntimeError('boom at import')\n")
    write_plugin(
        plugin_dir,
        "lat_plugin_init",
        """
        from dynvit_ros.latency.base import LatencyModel
        class Broken(LatencyModel):
            def __init__(self, context):
                raise ValueError("no hardware here")
            def predict(self, config, input_hw):
                return 1.0
        NOT_CALLABLE = 3
        class Incomplete:
            def __init__(self, context):
                pass
            def predict(self, config, input_hw):
                return 1.0
    """,
    )
    with pytest.raises(LatencyModelError, match="cannot import.*boom at import"):
        load_latency_model("lat_plugin_import:Anything", context)
    with pytest.raises(
        LatencyModelError, match="failed to initialise: ValueError: no hardware here"
    ):
        load_latency_model("lat_plugin_init:Broken", context)
    with pytest.raises(LatencyModelError, match="not a class or factory"):
        load_latency_model("lat_plugin_init:NOT_CALLABLE", context)
    with pytest.raises(LatencyModelError, match="lacks observe, predict_all"):
        load_latency_model("lat_plugin_init:Incomplete", context)


def test_bad_hardware_option_is_a_clear_error(context, tmp_path):
    bad = LatencyContext(context.model, LEVELS, (120, 160), {"hardware": "no_such_chip"})
    with pytest.raises(
        LatencyModelError, match="unknown accelerator preset 'no_such_chip'.*gv100"
    ):
        load_latency_model("accelerator", bad)
    (tmp_path / "chip.yaml").write_text("name: chip\npe_rows: 2\nwarp_drive: 9\n")
    bad = LatencyContext(
        context.model, LEVELS, (120, 160), {"hardware": str(tmp_path / "chip.yaml")}
    )
    with pytest.raises(LatencyModelError, match="unknown hardware keys.*warp_drive"):
        load_latency_model("accelerator", bad)
