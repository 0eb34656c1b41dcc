import json

import pytest

from napari_dip import DIPConfig, SGLDConfig, config_from_dict, make_config
from napari_dip.core import config_from_json, resolve_config


def test_paper_defaults():
    dip, sgld = DIPConfig(), SGLDConfig()
    assert (dip.width, dip.scales, dip.skip_channels, dip.input_channels) == (128, 5, 4, 32)
    assert dip.lr == 0.01 and dip.ema == 0.99 and dip.steps == 3000
    assert dip.jitter == pytest.approx(1 / 30) and dip.backtrack_db == 5.0
    assert (sgld.steps, sgld.burn_in, sgld.thinning) == (20000, 7000, 50)
    assert sgld.weight_decay == 5e-8 and sgld.noise_scale == 2.0


def test_quality_preset_is_paper_config():
    assert make_config("dip", "quality") == DIPConfig()
    assert make_config("sgld", "quality") == SGLDConfig()


@pytest.mark.parametrize("method", ["dip", "sgld"])
@pytest.mark.parametrize("preset", ["fast", "balanced", "quality"])
def test_json_round_trip(method, preset):
    cfg = make_config(method, preset, steps=1234)
    back = config_from_json(cfg.to_json())
    assert back == cfg and type(back) is type(cfg) and back.steps == 1234


def test_unknown_option_named():
    with pytest.raises(TypeError, match="'widht'"):
        make_config("dip", "fast", widht=3)
    with pytest.raises(TypeError, match="'burn_in'"):
        make_config("dip", "fast", burn_in=3)  # an SGLD-only field


@pytest.mark.parametrize(
    "key, value, exc",
    [("width", 0, ValueError), ("width", "wide", TypeError), ("lr", -1.0, ValueError),
     ("ema", 1.5, ValueError), ("upsample", "cubic", ValueError), ("steps", 2.5, TypeError),
     ("auto_stop", "yes", TypeError), ("lr", float("nan"), ValueError)],
)
def test_bad_values_name_the_key(key, value, exc):
    with pytest.raises(exc, match=key):
        config_from_dict({"method": "dip", key: value})


def test_bad_method_and_preset():
    with pytest.raises(ValueError, match="method"):
        make_config("gan")
    with pytest.raises(ValueError, match="preset"):
        make_config("dip", "turbo")
    with pytest.raises(ValueError, match="burn_in"):
        make_config("sgld", "fast", steps=100, burn_in=100)
    with pytest.raises(ValueError, match="auto_stop"):
        resolve_config(method="sgld", auto_stop=True)
    with pytest.raises(ValueError, match="JSON"):
        config_from_json("{not json")
    with pytest.raises(TypeError, match="config"):
        config_from_dict([1, 2])


def test_config_override_through_resolve():
    cfg = resolve_config(config=make_config("sgld", "fast").to_dict(), steps=50,
                         options={"burn_in": 10})
    assert isinstance(cfg, SGLDConfig) and cfg.steps == 50 and cfg.burn_in == 10
    assert json.loads(cfg.to_json())["method"] == "sgld"


@pytest.mark.parametrize("key", ["stop_window", "snapshot_every", "steps", "members"])
def test_huge_values_are_refused_naming_the_key(key):
    with pytest.raises(ValueError, match=key):
        make_config("dip", "fast", **{key: 10**15})
