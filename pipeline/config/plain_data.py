"""Params as plain data: for writing out (resolved.json, `--show`) and for MLflow and DVC's dotted columns."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from pipeline.config.params import Params
from pipeline.config.problems import join_key
from pipeline.config.types import DATASETS


def as_dict(block: BaseModel) -> dict[str, Any]:
    """The block as plain data (nested dicts; list fields stay lists, tuple fields tuples)."""
    return block.model_dump()


def active(params: Params, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
    """The params that shape this run: only the chosen model's block and the chosen dataset's block
    (`models.resnet34_unet.*` says nothing about a unet run, nor the ADE20K URLs about a synthetic one).
    mode "json" gives lists for tuples, for writing out."""
    values = params.model_dump(mode=mode)
    values["models"] = {params.model: values["models"][params.model]}
    values["data"] = {name: value for name, value in values["data"].items()
                      if name not in DATASETS or name == params.data.dataset}
    return values


def flatten(params: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """{'train.lr': 0.002, ...}: the form MLflow and DVC show parameters in."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(join_key(prefix, name), item)
        else:
            out[prefix] = value

    walk("", params if isinstance(params, dict) else as_dict(params))
    return out
