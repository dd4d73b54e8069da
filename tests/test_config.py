"""params.yaml is checked before any work: a bad key or value stops with a message naming it and what is allowed."""
from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from pipeline import config
from pipeline.config import (
    DATASETS,
    MODELS,
    ConfigError,
    DataParams,
    DatasetName,
    DeviceName,
    LossName,
    ModelsParams,
    OptimizerName,
    Params,
    SchedulerName,
    TrainParams,
    as_dict,
    expanded_size,
    flatten,
    load_params,
    parse,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_params_yaml_holds_what_experiments_change_and_a_block_for_each_model_and_dataset():
    """DVC tracks `models.${model}` and `data.${data.dataset}`: a missing block would stop `dvc repro`; an empty
    one takes `-S ++models.smp.encoder=...` and shows no column until then."""
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model == "unet" and params.data.dataset == "synthetic"
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert all(raw["models"][name] == {} for name in MODELS) and all(raw["data"][name] == {} for name in DATASETS)
    written = set(flatten(raw))  # the empty blocks add no key
    assert written < set(flatten(Params())) and len(written) <= 25, sorted(written)
    assert {"model", "data.dataset", "train.lr", "train.epochs", "train.precision", "train.seed"} <= written


@pytest.mark.parametrize("raw, message", [
    ({"model": "unet3"}, "model: 'unet3' is not allowed; choose one of unet, resnet34_unet, multiscale_unet"),
    ({"data": {"dataset": "coco"}}, "data.dataset: 'coco' is not allowed; choose one of synthetic, voc2012"),
    ({"train": {"lrr": 0.1}}, "train.lrr: unknown key (did you mean 'lr'?)"),
    ({"train": {"epochs": "ten"}}, "train.epochs: expected an int in 1..10000 or auto, got 'ten'"),
    ({"train": {"epochs": 2.5}}, "train.epochs: expected an int in 1..10000 or auto, got 2.5"),
    ({"train": {"lr": True}}, "train.lr: expected a float in (0, 10] or auto, got True"),
        ({"models": {"unet": {"lr": True}}}, "models.unet.lr: expected float, got True"),
    ({"models": {"unet": {"base_channel": 8}}},
     "models.unet.base_channel: unknown key (did you mean 'base_channels'?)"),
    ({"models": {"resnet34_unet": {"decoder_channels": [1, "x"]}}},
     "models.resnet34_unet.decoder_channels[1]: expected int"),
    ({"data": {"synthetic": 5}}, "data.synthetic: expected a mapping with keys num_train, num_val, seed"),
    ({"train": {"optimizer": "rmsprop"}}, "train.optimizer: 'rmsprop' is not allowed; choose one of adam, adamw, sgd"),
])
def test_bad_values_name_the_key_and_the_allowed_values(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert message in str(error.value)


def test_show_prints_every_value_a_run_uses_the_defaults_included(capsys):
    config.main([str(REPO_ROOT / "params.yaml"), "--show"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["momentum"] == 0.9 and shown["train"]["lr"] == 0.003  # a default; unet's own lr for auto
    assert list(shown["models"]) == ["unet"] and shown["models"]["unet"]["base_channels"] == 16
    assert "voc2012" not in shown["data"] and shown["data"]["synthetic"]["num_train"] == 90


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


def test_the_defaults_are_params_yaml_so_they_cannot_drift():
    assert load_params(REPO_ROOT / "params.yaml") == Params()
    assert Params.model_validate(as_dict(Params())) == Params(), "the defaults must pass their own checks"


def test_yaml_exponents_without_a_dot_are_floats(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-4\nevaluate:\n  tta_scales: [1e-0, 1.5]\n")
    assert yaml.safe_load(path.read_text())["train"]["lr"] == "1e-3", "PyYAML reads this as a string"
    params = load_params(path)
    assert params.train.lr == 0.001 and params.train.weight_decay == 0.0005 and params.evaluate.tta_scales == [1.0, 1.5]


@pytest.mark.parametrize("raw, message", [
    ({"data": {"image_size": 8}}, "data.image_size: must be >= 16, got 8"),
    ({"data": {"synthetic": {"num_train": 0}}}, "data.synthetic.num_train: must be >= 1"),
    ({"data": {"synthetic": {"num_val": 0}}}, "data.synthetic.num_val: must be >= 1"),
    ({"data": {"single_class": {"val_fraction": 0}}}, "data.single_class.val_fraction: must be > 0"),
    ({"data": {"single_class": {"val_fraction": 1}}}, "data.single_class.val_fraction: must be < 1"),
    ({"data": {"folder": {"val_fraction": 0}}}, "data.folder.val_fraction: must be > 0"),
    ({"data": {"folder": {"colors": {"leaf": [0, 256, 0]}}}}, "data.folder.colors.leaf[1]: must be <= 255"),
    ({"data": {"subset": {"train": 0}}}, "data.subset.train: must be >= 1"),
    ({"data": {"subset": {"val": -3}}}, "data.subset.val: must be >= 1"),
    ({"models": {"unet": {"base_channels": 0}}}, "models.unet.base_channels: must be >= 1"),
    ({"models": {"unet": {"depth": 0}}}, "models.unet.depth: must be >= 1"),
    ({"models": {"unet": {"dropout": 1.0}}}, "models.unet.dropout: must be < 1"),
    ({"models": {"unet": {"dropout": -0.1}}}, "models.unet.dropout: must be >= 0"),
    ({"models": {"multiscale_unet": {"base_channels": 0}}}, "models.multiscale_unet.base_channels: must be >= 1"),
    ({"models": {"multiscale_unet": {"depth": 0}}}, "models.multiscale_unet.depth: must be >= 1"),
    ({"models": {"multiscale_unet": {"dropout": 1}}}, "models.multiscale_unet.dropout: must be < 1"),
    ({"models": {"multiscale_unet": {"scales": []}}}, "models.multiscale_unet.scales: must not be empty"),
    ({"models": {"multiscale_unet": {"scales": [256, 0]}}}, "models.multiscale_unet.scales[1]: must be >= 1"),
    ({"models": {"resnet34_unet": {"decoder_channels": []}}},
     "models.resnet34_unet.decoder_channels: must not be empty"),
    ({"models": {"resnet34_unet": {"decoder_channels": [8, -1]}}},
     "models.resnet34_unet.decoder_channels[1]: must be >= 1"),
    ({"train": {"epochs": 0}}, "train.epochs: expected an int in 1..10000 or auto, got 0"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
    ({"train": {"lr": 0}}, "train.lr: expected a float in (0, 10] or auto, got 0"),
    ({"models": {"unet": {"lr": 0}}}, "models.unet.lr: must be > 0"),
    ({"models": {"smp": {"lr": "-1e-3"}}}, "models.smp.lr: must be > 0"),
    ({"models": {"unet": {"lr": ".inf"}}}, "models.unet.lr: expected float, got '.inf'"),
    ({"train": {"momentum": 1}}, "train.momentum: must be < 1"),
    ({"train": {"momentum": -0.5}}, "train.momentum: must be >= 0"),
    ({"train": {"weight_decay": -1e-4}}, "train.weight_decay: must be >= 0"),
    ({"train": {"warmup_epochs": -1}}, "train.warmup_epochs: must be >= 0"),
    ({"train": {"poly_power": 0}}, "train.poly_power: must be > 0"),
    ({"train": {"plateau_patience": -1}}, "train.plateau_patience: must be >= 0"),
    ({"train": {"plateau_factor": 0}}, "train.plateau_factor: must be > 0"),
    ({"train": {"plateau_factor": 1}}, "train.plateau_factor: must be < 1"),
    ({"train": {"focal_gamma": -1}}, "train.focal_gamma: must be >= 0"),
    ({"train": {"grad_clip_norm": -1}}, "train.grad_clip_norm: must be >= 0"),
    ({"train": {"early_stopping_patience": -1}}, "train.early_stopping_patience: must be >= 0"),
    ({"train": {"freeze_encoder_epochs": -1}}, "train.freeze_encoder_epochs: must be >= 0"),
    ({"train": {"progress_every": 0}}, "train.progress_every: must be >= 1"),
    ({"train": {"num_workers": -1}}, "train.num_workers: expected an int in 0..1024 or auto, got -1"),
    ({"train": {"distributed": {"nproc_per_node": 0}}}, "train.distributed.nproc_per_node: must be >= 1"),
    ({"train": {"distributed": {"sync_batchnorm": "yes"}}},
     "train.distributed.sync_batchnorm: expected true, false or auto, got 'yes'"),
    ({"train": {"num_threads": -2}}, "train.num_threads: expected an int in 0..1024 or auto, got -2"),
    ({"train": {"class_weights": [1.0, -0.5]}}, "train.class_weights[1]: must be >= 0"),
    ({"train": {"class_weights": [0, 0.0]}}, "train.class_weights: expected non-negative weights, not all zero"),
    ({"augment": {"crop_size": 8}}, "augment.crop_size: must be 0 (whole images) or at least 16, got 8"),
    ({"augment": {"crop_size": -16}}, "augment.crop_size: must be >= 0"),
    ({"augment": {"hflip": 1.5}}, "augment.hflip: must be <= 1"),
    ({"augment": {"affine": -0.1}}, "augment.affine: must be >= 0"),
    ({"augment": {"color_jitter": 2}}, "augment.color_jitter: must be <= 1"),
    ({"augment": {"scale_limit": 1}}, "augment.scale_limit: must be < 1"),
    ({"augment": {"rotate_limit": 181}}, "augment.rotate_limit: must be <= 180"),
    ({"augment": {"rotate_limit": -1}}, "augment.rotate_limit: must be >= 0"),
    ({"evaluate": {"batch_size": 0}}, "evaluate.batch_size: must be >= 1"),
    ({"evaluate": {"device": "tpu"}}, "evaluate.device: 'tpu' is not allowed; choose one of auto, cpu, cuda, mps"),
    ({"evaluate": {"tta_scales": []}}, "evaluate.tta_scales: must not be empty"),
    ({"evaluate": {"tta_scales": [1.0, 0]}}, "evaluate.tta_scales[1]: must be > 0"),
    ({"plot": {"num_samples": 0}}, "plot.num_samples: must be >= 1"),
])
def test_out_of_range_values_name_the_key_and_the_bound(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert message in str(error.value)


@pytest.mark.parametrize("raw, message", [
    ({"train": {"epochs": 4, "warmup_epochs": 4}}, "train.warmup_epochs: 4 must be less than train.epochs (4)"),
    ({"train": {"freeze_encoder_epochs": 2}},
     "train.freeze_encoder_epochs: 2 needs a model with a pretrained encoder (resnet34_unet, smp), got model: unet"),
    ({"model": "multiscale_unet", "train": {"freeze_encoder_epochs": 1}}, "got model: multiscale_unet"),
    ({"data": {"image_size": 64}, "models": {"unet": {"depth": 7}}},
     "models.unet.depth: 7 halves the input 7 times, so a side needs at least 128 pixels, but data.image_size "
     "gives 64; use a depth of at most 6"),
    ({"model": "multiscale_unet", "data": {"image_size": 64}, "augment": {"crop_size": 32},
      "models": {"multiscale_unet": {"depth": 6}}}, "models.multiscale_unet.depth: 6 halves the input 6 times, so a "
                                                    "side needs at least 64 pixels, but augment.crop_size gives 32"),
    ({"data": {"image_size": 64}, "augment": {"crop_size": 0}, "evaluate": {"tta_scales": [0.75, 1.0]},
      "models": {"unet": {"depth": 6}}}, "but evaluate.tta_scales gives 48; use a depth of at most 5"),
])
def test_cross_field_rules_name_both_keys(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert message in str(error.value)


def test_values_on_the_allowed_side_of_each_bound_pass():
    params = parse(Params, {
        "model": "resnet34_unet", "data": {"image_size": 16, "single_class": {"val_fraction": 0.99}},
        "train": {"epochs": 1, "warmup_epochs": 0, "momentum": 0, "freeze_encoder_epochs": 3, "class_weights": [0, 1]},
        "augment": {"crop_size": 16, "hflip": 1, "affine": 0, "rotate_limit": 180, "scale_limit": 0.99}}, "")
    assert params.augment.crop_size == params.data.image_size == 16 and params.train.freeze_encoder_epochs == 3
    whole_images = {"crop_size": 0, "crops_per_image": 1}
    assert parse(Params, {"data": {"image_size": 64}, "augment": whole_images}, "").augment.crop_size == 0
    deepest = {"data": {"image_size": 64}, "augment": whole_images, "models": {"unet": {"depth": 6}}}
    assert parse(Params, deepest, "").models.unet.depth == 6  # pools 64 pixels down to 1


def test_a_block_parsed_alone_names_its_keys_from_the_given_prefix():
    with pytest.raises(ConfigError, match=r"^train\.class_weights: expected non-negative weights, not all zero"):
        parse(TrainParams, {"class_weights": [0, 0]}, "train")
    with pytest.raises(ConfigError, match=r"^data\.image_size: must be >= 16, got 8$"):
        parse(DataParams, {"image_size": 8}, "data")


def test_every_problem_is_reported_in_one_error():
    with pytest.raises(ConfigError) as error:
        parse(Params, {"train": {"epochs": 0, "lr": "fast"}, "plot": {"num_samples": 0}}, "")
    lines = str(error.value).splitlines()
    assert lines == ["train.epochs: expected an int in 1..10000 or auto, got 0",
                     "train.lr: expected a float in (0, 10] or auto, got 'fast'",
                     "plot.num_samples: must be >= 1, got 0"]


def test_strict_types_refuse_coercion():
    for raw, message in [({"train": {"batch_size": "8"}}, "train.batch_size: expected int, got '8'"),
                         ({"train": {"seed": True}}, "train.seed: expected int, got True"),
                         ({"train": {"deterministic": "yes"}}, "train.deterministic: expected bool, got 'yes'"),
                         ({"data": {"root": 5}}, "data.root: expected str, got 5")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse(Params, raw, "")


def test_params_are_frozen_and_dump_to_plain_data():
    params = Params()
    with pytest.raises(ValidationError):
        params.train.lr = 1.0
    assert params.model_params().architecture() == {"base_channels": 16, "depth": 5, "bilinear": True, "dropout": 0.0,
                                                    "residual": True}
    assert as_dict(params.models.resnet34_unet)["decoder_channels"] == (256, 128, 64, 32, 16)
    assert as_dict(params.models.multiscale_unet)["scales"] == (256, 128, 64)
    assert as_dict(params)["evaluate"] == {"batch_size": 8, "device": "auto", "tta_hflip": False, "tta_scales": [1.0]}
    assert flatten(params)["train.lr"] == 0.003 and flatten(params)["models.unet.base_channels"] == 16


def test_the_names_other_modules_import_come_from_the_literals():
    assert MODELS == ("unet", "resnet34_unet", "multiscale_unet", "smp") == tuple(ModelsParams.model_fields)
    assert DATASETS == typing.get_args(DatasetName) and "single_class" in DATASETS
    assert typing.get_args(OptimizerName) == ("adam", "adamw", "sgd")
    assert typing.get_args(SchedulerName) == ("plateau", "cosine", "poly", "none")
    assert typing.get_args(LossName) == ("ce", "dice", "focal", "ce+dice")
    assert set(typing.get_args(DeviceName)) == {"auto", "cpu", "cuda", "mps"}


def test_the_recipe_follows_the_model_unless_train_lr_epochs_or_crops_per_image_is_set():
    """`-S model=<name>` alone brings that model's lr, epochs and crops per image; a number in train.lr,
    train.epochs or augment.crops_per_image is used for every model."""
    assert parse(Params, {"model": "unet"}, "").train.lr == Params().models.unet.lr == 0.003
    assert parse(Params, {"model": "resnet34_unet"}, "").train.lr == 0.001
    assert parse(Params, {"model": "smp", "models": {"smp": {"lr": 0.02}}}, "").train.lr == 0.02
    assert parse(Params, {"model": "resnet34_unet", "train": {"lr": 0.05}}, "").train.lr == 0.05
    assert flatten(parse(Params, {"model": "multiscale_unet"}, ""))["train.lr"] == 0.001
    assert parse(Params, {"model": "unet"}, "").augment.crops_per_image == 2
    assert parse(Params, {"model": "unet", "models": {"unet": {"crops_per_image": 5}}}, "").augment.crops_per_image == 5
    assert parse(Params, {"model": "unet", "augment": {"crops_per_image": 1}}, "").augment.crops_per_image == 1
    assert parse(Params, {"model": "unet"}, "").train.epochs == 4
    assert parse(Params, {"model": "resnet34_unet"}, "").train.epochs == 5
    assert parse(Params, {"model": "resnet34_unet", "train": {"epochs": 2}}, "").train.epochs == 2
    with pytest.raises(ConfigError, match=r"^train\.warmup_epochs: 4 must be less than train\.epochs \(4\)$"):
        parse(Params, {"model": "unet", "train": {"warmup_epochs": 4}}, "")
    assert parse(Params, {"model": "resnet34_unet"}, "").recipe() == {"lr": 0.001, "epochs": 5, "crops_per_image": 1}
    architecture = Params().model_params().architecture()
    assert not {"lr", "epochs", "crops_per_image"} & set(architecture), "builders never see the recipe"


def billion_laughs(levels: int) -> str:
    """A YAML document whose last alias stands for 10**levels values (each level is ten aliases of the one below)."""
    lines = ["l0: &l0 [lol]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\ntrain:\n  class_weights: *l{levels}\n"


def test_a_yaml_alias_bomb_is_refused_by_name_before_anything_expands_it(tmp_path, monkeypatch):
    path = tmp_path / "params.yaml"
    monkeypatch.setattr(config, "parse", None)  # validating would walk all 10**9 values: it must not be reached
    for text in (billion_laughs(9), "train:\n  class_weights: &loop [*loop]\n"):  # a value that holds itself
        path.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_params(path)
        assert str(error.value) == (f"{path}: its YAML aliases (*name) repeat more than 10,000 values; a params file "
                                    "holds a few hundred: write the values out")
    sizes = {}  # the count takes one step per distinct node of the document, not per value it stands for
    assert expanded_size(yaml.compose(billion_laughs(9)), sizes) > 10**9 and len(sizes) < 50


def test_the_params_checker_refuses_a_bomb_in_one_line_and_passes_the_projects_own_file(tmp_path):
    """DVC expands all of params.yaml before any stage runs: `python -m pipeline.config` is the check to run first."""
    (tmp_path / "params.yaml").write_text(billion_laughs(9))
    checker = [sys.executable, "-m", "pipeline.config"]
    refused = subprocess.run([*checker, str(tmp_path / "params.yaml")], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"error in {tmp_path / 'params.yaml'}: {tmp_path / 'params.yaml'}: its YAML "
                                           "aliases (*name) repeat more than 10,000 values; a params file holds a "
                                           "few hundred: write the values out"]
    valid = subprocess.run(checker, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert (valid.returncode, valid.stdout) == (0, "params.yaml: valid\n"), valid.stderr


def test_a_few_aliases_load_and_a_long_list_written_out_is_no_bomb(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: &lr 0.01\nmodels:\n  unet:\n    lr: *lr\n")
    params = load_params(path)
    assert params.train.lr == params.models.unet.lr == 0.01
    path.write_text("train:\n  class_weights: [" + ", ".join(["0"] * 20_000) + "]\n")  # its size is the file's
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert str(error.value) == "train.class_weights: expected one weight per class, at most 255; got 20000"


@pytest.mark.parametrize("raw", [
    {"train": {"class_weights": ["x"] * 100_000}},
    {"train": {"class_weights": [0] * 100_000}},
    {"data": {"root": "r" * 1_000_000}, "train": {"lr": {"x" * 1000: [["y" * 1000] * 100] * 100}}},
    {"train": {"x" * 100_000: 1}},
])
def test_messages_quote_a_few_hundred_characters_of_any_value(raw):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    lines = str(error.value).splitlines()
    assert len(lines) <= 11 and all(len(line) < 600 for line in lines)  # ten problems, then how many more
    assert not re.search(r"(.)\1{200}", str(error.value)), "quoted more than 200 characters of a value"


@pytest.mark.parametrize("raw, message", [
    ({"train": {"lr": {"a": 1}}}, "train.lr: expected a float in (0, 10] or auto, got {'a': 1}"),
    ({"train": {"num_workers": "{0}"}}, "train.num_workers: expected an int in 0..1024 or auto, got '{0}'"),
])
def test_values_with_braces_are_quoted_as_they_are(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert str(error.value) == message


def limit_memory(size: int):
    """A preexec_fn that caps the child's address space at `size` bytes: a runaway allocation fails, not the machine."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return limit


def numeric_fields(model: type, prefix: str = "") -> typing.Iterator[tuple[str, typing.Any]]:
    """(dotted key, FieldInfo) of every int or float param, walking the nested blocks."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from numeric_fields(annotation, f"{prefix}{name}.")
        elif {int, float} & set(leaf_types(annotation)):
            yield f"{prefix}{name}", info


def leaf_types(annotation) -> list:
    args = typing.get_args(annotation)
    return [leaf for arg in args for leaf in leaf_types(arg)] if args else [annotation]


def upper_bound(info) -> float | None:
    """The field's own `le`/`lt`, or its items' (list fields, unions with auto), found in the annotations."""
    found = [getattr(item, name) for item in walk_metadata(info) for name in ("le", "lt")
             if getattr(item, name, None) is not None]
    return min(found) if found else None


def walk_metadata(info) -> typing.Iterator:
    stack = [*info.metadata, info.annotation]
    while stack:
        item = stack.pop()
        yield item
        stack.extend(getattr(item, "__metadata__", ()))
        stack.extend(typing.get_args(item))
        stack.extend(getattr(item, "metadata", ()))


def test_every_numeric_param_has_an_upper_bound():
    """Issue 32: no number in params.yaml is unbounded (a depth of 10**12 made validation itself take 23 GB)."""
    unbounded = [key for key, info in numeric_fields(Params) if upper_bound(info) is None]
    assert unbounded == []
    assert dict((key, upper_bound(info)) for key, info in numeric_fields(Params))["models.unet.depth"] == 12


@pytest.mark.parametrize("value, message", [
    ("1000000000000", "models.unet.depth: must be <= 12, got 1000000000000"),
    ("20000", "models.unet.depth: must be <= 12, got 20000"),
    ("9" * 5000, "holds a number of thousands of digits; no param takes one"),
    ("9" * 4000, "models.unet.depth: must be <= 12, got 9999"),
])
def test_the_checker_answers_any_depth_in_one_line_within_a_second_and_bounded_memory(tmp_path, value, message):
    """Issue 32: `python -m pipeline.config` on a huge number: one line, no traceback, within 1 GB of address space
    (the interpreter and pydantic included; 10**12 took 23 GB), well under a second of work."""
    path = tmp_path / "params.yaml"
    path.write_text(f"models:\n  unet:\n    depth: {value}\n")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipeline.config", str(path)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, preexec_fn=limit_memory(1 << 30))
    took = time.perf_counter() - started
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert took < 10  # the interpreter's start and imports included; validation itself is O(1) in the value


@pytest.mark.parametrize("raw, message", [
    ({"data": {"voc_layout": {"classes": ["cat", "dog", "cat"]}}},
     "data.voc_layout.classes: names must be unique, 'cat' appears twice"),
    ({"data": {"folder": {"classes": ["x" * 101]}}}, "data.folder.classes: expected names of 1..100 characters"),
    ({"data": {"folder": {"classes": [f"c{i}" for i in range(256)]}}},
     "data.folder.classes: expected a list of 1..255 names (a uint8 mask holds no more), got 256 items"),
    ({"evaluate": {"tta_scales": [1.0] * 17}}, "evaluate.tta_scales: must have at most 16 items, got 17"),
    ({"train": {"seed": 2**40}}, "train.seed: must be <= 2147483647"),
    ({"train": {"lr": 1000}}, "train.lr: expected a float in (0, 10] or auto, got 1000"),
])
def test_lists_and_names_are_bounded_too(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, raw, "")
    assert message in str(error.value)
