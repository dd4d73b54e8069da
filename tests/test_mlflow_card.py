"""What a training and its evaluation leave in MLflow for people: a model-training experiment, system metrics on the
run, eval metrics on the logged model, and a model card as the version's description and as model_card.md. One
tiny real training and the real evaluate stage, read back through the MLflow client."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import mlflow
import pytest

from pipeline import paths
from pipeline.config import MlflowParams, Params, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import synthetic
from pipeline.data.sources.voc import read_custom_voc
from pipeline.models import card
from pipeline.tracking.attach import iou_metrics
from pipeline.tracking.run import data_digest
from pipeline.tracking.store import EXPERIMENT_KIND_TAG, setup_experiment
from pipeline.training.train import train
from stages import evaluate as evaluate_stage

CLASSES = ["background", "disc", "square", "triangle", "star", "cross"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A repository-like folder with tiny synthetic data, trained for one epoch and evaluated by the stage."""
    root = tmp_path_factory.mktemp("repo")
    synthetic.generate(root / "raw", num_train=48, num_val=6, seed=1)  # enough to learn: the model is registered
    write_interim(read_custom_voc(root / "raw", None), paths.interim_dir("synthetic", root))
    preprocess(paths.interim_dir("synthetic", root), paths.processed_dir("synthetic", root), 64)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = parse(Params, {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 8, "depth": 3}},
                            "train": {"epochs": 2, "batch_size": 4, "lr": 0.01},
                            "augment": {"crop_size": 0, "crops_per_image": 1},
                            "evaluate": {"batch_size": 4},
                            "mlflow": {"tracking_uri": uri, "experiment": "cards", "log_onnx": False}}, "")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")  # a one-epoch run lasts seconds
        train(params, paths.processed_dir("synthetic"), paths.TrainOutputs.under())
        monitors_left = [thread for thread in threading.enumerate() if thread.name == "SystemMetricsMonitor"]
        evaluate_stage.main(params)
    client = mlflow.MlflowClient(uri)
    (version,) = client.search_model_versions("name = 'cards-synthetic-6cls'")
    run = client.get_run(version.run_id)
    (model_output,) = run.outputs.model_outputs
    return {"root": root, "uri": uri, "client": client, "version": version, "monitors_left": monitors_left,
            "run": run, "model_id": model_output.model_id,
            "eval": json.loads((paths.eval_dir(root) / "metrics.json").read_text())}


@pytest.mark.slow
def test_the_experiment_is_marked_as_model_training(store):
    experiment = store["client"].get_experiment_by_name("cards")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


@pytest.mark.slow
def test_system_metrics_are_recorded_on_the_run_and_the_sampler_stops_with_it(store):
    sampled = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}
    assert sampled <= set(store["run"].data.metrics)
    assert store["monitors_left"] == []


@pytest.mark.slow
def test_eval_and_best_val_metrics_are_linked_to_the_logged_model(store):
    logged = store["client"].get_logged_model(store["model_id"])
    on_model = {metric.key: metric.value for metric in logged.metrics}
    assert on_model["eval_miou"] == pytest.approx(store["eval"]["miou"])
    assert on_model["best_val_miou"] == store["run"].data.metrics["best_val_miou"]
    assert store["run"].data.metrics["eval_miou"] == pytest.approx(store["eval"]["miou"])


@pytest.mark.slow
def test_the_version_carries_the_evaluated_card_as_description_and_as_model_card_md(store, tmp_path):
    description = store["version"].description
    for section in ("Data", "Recipe", "Training", card.EVALUATION, "Intended use and limits"):
        assert f"\n## {section}\n" in description
    digest = data_digest(paths.processed_dir("synthetic", store["root"]))
    assert f"`{digest}`" in description and "train 48, val 6" in description
    assert all(f"`{name}`" in description for name in CLASSES) and "| optimizer | adamw, lr 0.01" in description
    assert "| precision | " + store["run"].data.params["precision"] + " |" in description
    assert "Not evaluated yet" not in description and f"| mIoU | {store['eval']['miou']:.4f} |" in description
    per_class = json.loads((paths.eval_dir(store["root"]) / "per_class_iou.json").read_text())
    assert all(f"| {name} | " in description for name in per_class) and "Trained 2 epochs in " in description
    downloaded = mlflow.artifacts.download_artifacts(f"models:/{store['version'].name}/1", dst_path=str(tmp_path),
                                                     tracking_uri=store["uri"])
    assert (Path(downloaded) / card.FILE_NAME).read_text() == description


@pytest.mark.slow
def test_per_class_iou_is_a_metric_of_the_run_and_the_logged_model(store):
    per_class = json.loads((paths.eval_dir(store["root"]) / "per_class_iou.json").read_text())
    expected = {f"iou/{name}": value for name, value in per_class.items() if value is not None}
    assert expected and {key: value for key, value in store["run"].data.metrics.items()
                         if key.startswith("iou/")} == pytest.approx(expected)
    logged = store["client"].get_logged_model(store["model_id"])
    assert {metric.key for metric in logged.metrics} >= set(expected)


@pytest.mark.slow
def test_the_registered_model_itself_carries_the_champions_evaluated_card(store):
    registered = store["client"].get_registered_model(store["version"].name)
    assert registered.description == store["version"].description
    assert f"| mIoU | {store['eval']['miou']:.4f} |" in registered.description


def test_class_names_become_metric_names_mlflow_takes():
    assert iou_metrics({"tv/monitor": 0.5, "potted plant": 0.25, "..": 0.1, "café": 0.2, "absent": None}) \
        == {"iou/tv_monitor": 0.5, "iou/potted plant": 0.25, "iou/_": 0.1, "iou/café": 0.2}


def test_an_experiment_made_before_gets_the_kind_and_a_chosen_kind_is_kept(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("old")
    mlflow.create_experiment("traces", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("old", "traces"):
        setup_experiment(MlflowParams(tracking_uri=uri, experiment=name))
    kinds = {name: mlflow.get_experiment_by_name(name).tags[EXPERIMENT_KIND_TAG] for name in ("old", "traces")}
    assert kinds == {"old": "custom_model_development", "traces": "genai_development"}


def test_evaluation_replaces_its_section_once_and_lists_test_scores_and_the_limits_of_partial_labels():
    params = parse(Params, {"data": {"dataset": "single_class", "root": "/data/sc", "subset": {"val": 2}}}, "")
    manifest = {"classes": CLASSES[:3], "image_size": 128, "splits": {"train": {"ids": ["a", "b", "c"]},
                                                                      "val": {"ids": ["d", "e"]}}}
    resolved = {"device": "cpu", "precision": "fp32", "num_threads": 2, "num_processes": 1, "global_batch_size": 4}
    best = {"val_miou": 0.5, "val_pixel_accuracy": 0.9, "val_loss": 0.3, "best_epoch": 3}
    first = card.training_card("seg-single_class-3cls", params, manifest, "abc", True, {"train": 2, "val": 2},
                               resolved, best, 90.0, 4, 2)
    assert "train 3 (trained on a seeded subset of 2), val 2" in first and "resumed after epoch 2" in first
    assert "Partial labels" in first and "`data.subset.val`" in first and "Trained 4 epochs in 1.5 min" in first
    scores = {name: 0.5 for name, _ in card.SCORES} | {f"test_{name}": 0.25 for name, _ in card.SCORES}
    section = card.evaluation_section(scores, {"background": 0.9, "disc": None, "square": 0.1})
    evaluated = card.with_section(card.with_section(first, card.EVALUATION, "EARLIER"), card.EVALUATION, section)
    assert evaluated.count(f"## {card.EVALUATION}") == 1 and "EARLIER" not in evaluated
    assert "| mIoU | 0.5000 | 0.2500 |" in evaluated and "| disc | absent from val |" in evaluated
    limits = "## Intended use and limits"
    assert evaluated.split(limits)[1] == first.split(limits)[1] and evaluated.split("## Evaluation")[0] == \
        first.split("## Evaluation")[0]
