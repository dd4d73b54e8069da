"""params.yaml is checked before any work: a bad key or value stops with a message naming it and what is allowed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, Params, flatten, load_params, parse

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_params_yaml_loads_and_names_every_dataclass_field():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model == "unet" and params.data.dataset == "synthetic"
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    flat_yaml = set(flatten(parse(Params, raw, "")))
    assert flat_yaml == set(flatten(Params())), "params.yaml and the defaults in config.py list different keys"


@pytest.mark.parametrize("raw, message", [
    ({"model": "unet3"}, "model: 'unet3' is not allowed; choose one of unet, resnet34_unet, multiscale_unet"),
    ({"data": {"dataset": "coco"}}, "data.dataset: 'coco' is not allowed; choose one of synthetic, voc2012"),
    ({"train": {"lrr": 0.1}}, "train.lrr: unknown key (did you mean 'lr'?)"),
    ({"train": {"epochs": "ten"}}, "train.epochs: expected int, got 'ten'"),
    ({"train": {"epochs": 2.5}}, "train.epochs: expected int, got 2.5"),
    ({"train": {"lr": True}}, "train.lr: expected float, got True"),
    ({"models": {"unet": {"base_channel": 8}}}, "models.unet.base_channel: unknown key (did you mean 'base_channels'?)"),
    ({"models": {"resnet34_unet": {"decoder_channels": [1, "x"]}}}, "models.resnet34_unet.decoder_channels[1]: expected int"),
    ({"data": {"synthetic": 5}}, "data.synthetic: expected a mapping with keys num_train, num_val, seed"),
    ({"train": {"optimizer": "rmsprop"}}, "train.optimizer: 'rmsprop' is not allowed; choose one of adam, adamw, sgd"),
])
def test_bad_values_name_the_key_and_the_allowed_values(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert message in str(error.value)


def test_ints_are_accepted_for_floats_and_null_for_optional_keys():
    params = parse(Params, {"train": {"lr": 1, "init_from": None}, "data": {"subset": {"train": 10}}}, "")
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.train.init_from is None and params.data.subset.train == 10


def test_a_stage_with_bad_params_stops_at_once_with_the_message(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("model: unet\ndata:\n  dataset: pascal\n")
    result = subprocess.run([sys.executable, "-m", "stages.download", "--params", str(bad)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "data.dataset: 'pascal' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
