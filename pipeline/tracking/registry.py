"""The MLflow model registry: one registered model per kind of segmentation, and `champion` only among equals.

A val mIoU means something only next to another measured on the same val images with the same classes, so each
model version carries the tags that say what it was measured on (dataset, a digest of the class list, a digest of
the val arrays, whether the whole val split was scored) and the name says what it segments
(`segmentation-synthetic-6cls`). `champion` is the best val mIoU among the versions comparable with the name's
first eligible version; a `data.subset.val` run or a run on other val data is registered but never champion.

Promotion needs no lock, so parallel `dvc queue` workers on one laptop and a team on one tracking server behave
alike: the champion is a pure function of the registered versions, and each worker sets the alias to it, then
re-reads versions and alias until they agree (compare-and-set through the server). A worker that wrote from a
stale view re-reads after writing and corrects it, so the last write is always made from a view holding every
version registered before it.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion

from pipeline.digest import file_digest
from pipeline.errors import UserError
from pipeline.secrets import redact

log = logging.getLogger(__name__)

CHAMPION = "champion"
TAG_PREFIX = "segmentation."
PROMOTION_ATTEMPTS = 20
ALREADY_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")  # what mlflow.register_model tolerates too


class RegistryRightsError(UserError):
    """The tracking server will not let this user register the trained model."""


@dataclass(frozen=True)
class Measurement:
    """What a version's val mIoU was measured on; two versions compete only if these agree."""
    dataset: str
    classes_sha: str
    val_data_sha: str
    full_val: bool

    @classmethod
    def of(cls, dataset: str, class_names: list[str], processed_dir: Path, val_subset: int | None) -> Measurement:
        classes_sha = hashlib.sha256("\n".join(class_names).encode()).hexdigest()[:16]
        return cls(dataset, classes_sha, file_digest(sorted(Path(processed_dir).glob("val_*.npy")))[:16],
                   val_subset is None)

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Measurement | None:
        try:
            return cls(tags[TAG_PREFIX + "dataset"], tags[TAG_PREFIX + "classes_sha"],
                       tags[TAG_PREFIX + "val_data_sha"], tags[TAG_PREFIX + "full_val"] == "true")
        except KeyError:  # registered by hand or by an older version of the project: never compared
            return None

    def tags(self) -> dict[str, str]:
        return {TAG_PREFIX + "dataset": self.dataset, TAG_PREFIX + "classes_sha": self.classes_sha,
                TAG_PREFIX + "val_data_sha": self.val_data_sha, TAG_PREFIX + "full_val": str(self.full_val).lower()}

    def comparable(self, other: Measurement) -> bool:
        return self.full_val and other.full_val and self == other


def registered_name(experiment: str, dataset: str, num_classes: int) -> str:
    """What it segments, as a user would search for it: `segmentation-voc2012-21cls`."""
    return f"{experiment}-{dataset}-{num_classes}cls"


def check_rights_to_register(name: str) -> None:
    """Make, before the first epoch, the registry calls the end of the training makes, so that a user who may log
    runs but not register models learns it at once instead of after the whole training (HTTP 403, run FAILED):
    create `name` if it is missing (registration would; an admin's model of that name stays as it is), then
    update it with its own description, a change of nothing that needs the right that adding a version and
    moving @champion need."""
    client = mlflow.MlflowClient()
    call = "create"
    try:
        try:
            client.create_registered_model(name)
            return  # its creator may update it
        except mlflow.exceptions.MlflowException as error:
            if error.error_code not in ALREADY_EXISTS:
                raise
        call = "update"
        client.update_registered_model(name, description=client.get_registered_model(name).description or "")
    except mlflow.exceptions.MlflowException as error:
        if error.get_http_status_code() not in (401, 403):
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        raise RegistryRightsError(
            f"the MLflow server {redact(mlflow.get_tracking_uri())} does not let "
            f"{f'user {user!r}' if user else 'this user'} register models as {name!r} (HTTP "
            f"{error.get_http_status_code()} on {call}), which the end of the training needs: ask its admin for EDIT "
            "on that registered model, or set mlflow.experiment to register under another name") from None


def register_and_promote(model_uri: str, name: str, measurement: Measurement, val_miou: float,
                         description: str = "") -> ModelVersion:
    """Register `model_uri` under `name` with what its val mIoU was measured on (and `description`, the model
    card), then settle `champion`."""
    tags = {**measurement.tags(), TAG_PREFIX + "val_miou": repr(float(val_miou))}
    version = mlflow.register_model(model_uri, name, tags=tags)
    client = mlflow.MlflowClient()
    if description:
        client.update_model_version(name, version.version, description=description)
    champion = settle_champion(client, name)
    describe_registered_model(client, name)
    if champion is None or not measurement.comparable(Measurement.from_tags(champion.tags)):
        reason = ("its val split is a data.subset.val subset" if not measurement.full_val else
                  "its val data or classes differ from the champion's")
        log.info(f"registered {name} version {version.version}; not a candidate for @{CHAMPION}: {reason}. To start a "
                 "new comparison line on purpose (new val data or classes), train with another mlflow.experiment: "
                 "its models are registered under a new name, with their own champion")
    return version


def describe_registered_model(client: mlflow.MlflowClient, name: str) -> None:
    """Give the registered model itself the card of the version to use: @champion's, else the latest version's (while
    none is comparable). MLflow shows it on the model's own page, above the versions, where it was empty."""
    version = current_champion(client, name) or max((v.version for v in all_versions(client, name)), key=int)
    description = client.get_model_version(name, version).description or ""
    if client.get_registered_model(name).description != description:
        client.update_registered_model(name, description=description)


def settle_champion(client: mlflow.MlflowClient, name: str) -> ModelVersion | None:
    """Point `champion` at the best comparable version, re-reading until the registry agrees (see the module doc)."""
    lost_race = None
    for _ in range(PROMOTION_ATTEMPTS):
        best = best_version(all_versions(client, name))
        if best is None:
            return None
        if current_champion(client, name) == str(best.version):
            return best
        try:
            client.set_registered_model_alias(name, CHAMPION, best.version)
        except mlflow.exceptions.MlflowException as error:
            if not another_writer_created_alias(client, name, error):
                raise
            lost_race = error
    raise RuntimeError(f"{name}: @{CHAMPION} did not settle after {PROMOTION_ATTEMPTS} attempts") from lost_race


def another_writer_created_alias(client: mlflow.MlflowClient, name: str, error: mlflow.exceptions.MlflowException
                                 ) -> bool:
    """Whether setting the alias failed because another writer created it in the same instant. The store
    checks for the alias, then inserts it; the slower of two first-time writers breaks the unique key, which
    MLflow reports as BAD_REQUEST (the raw database error over REST). The alias then exists: re-read and retry."""
    return error.error_code == "BAD_REQUEST" and current_champion(client, name) is not None


def all_versions(client: mlflow.MlflowClient, name: str) -> list[ModelVersion]:
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=200, page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def best_version(versions: list[ModelVersion]) -> ModelVersion | None:
    """The highest val mIoU among versions comparable with the first eligible one (ties: the earlier version)."""
    eligible = sorted((v for v in versions if (m := Measurement.from_tags(v.tags)) is not None and m.full_val),
                      key=lambda v: int(v.version))
    if not eligible:
        return None
    reference = Measurement.from_tags(eligible[0].tags)
    candidates = [v for v in eligible if reference.comparable(Measurement.from_tags(v.tags))]
    return max(candidates, key=lambda v: (float(v.tags[TAG_PREFIX + "val_miou"]), -int(v.version)))


def current_champion(client: mlflow.MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None
