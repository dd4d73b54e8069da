"""The whole params file: the sections, and the rules that tie keys of different sections together (a rule about
one section lives in that section's module). `auto` in train and augment becomes the chosen model's recipe here."""
from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.config.data import DataParams
from pipeline.config.models import (
    POOLING_MODELS,
    PRETRAINED_MODELS,
    RECIPE_KEYS,
    ModelsParams,
    MultiScaleUNetParams,
    ResNet34UNetParams,
    SmpParams,
    UNetParams,
    smp_encoder_problem,
)
from pipeline.config.problems import invalid
from pipeline.config.reporting import EvaluateParams, MlflowParams, PlotParams
from pipeline.config.training import AugmentParams, TrainParams
from pipeline.config.types import Block, ModelName


class Params(Block):
    model: ModelName = "unet"
    data: DataParams = Field(default_factory=DataParams)
    models: ModelsParams = Field(default_factory=ModelsParams)
    train: TrainParams = Field(default_factory=TrainParams, validate_default=True)  # after model, models
    augment: AugmentParams = Field(default_factory=AugmentParams, validate_default=True)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    plot: PlotParams = Field(default_factory=PlotParams)
    mlflow: MlflowParams = Field(default_factory=MlflowParams)

    def model_params(self) -> UNetParams | ResNet34UNetParams | MultiScaleUNetParams | SmpParams:
        """The block `models.<model>` that configures the chosen architecture."""
        return getattr(self.models, self.model)

    def recipe(self) -> dict[str, Any]:
        """The recipe values this training uses (RECIPE_KEYS), `auto` resolved: params.yaml may say only auto."""
        return {key: getattr(getattr(self, section), key) for section, keys in RECIPE_KEYS.items() for key in keys}

    @field_validator("train", "augment")
    @classmethod
    def _model_recipe_fills_auto(cls, section: Block, info: ValidationInfo) -> Block:
        """<section>.<key>: auto becomes models.<model>.<key> (fields above the section are validated first), so
        the rest of the code sees numbers only and MLflow logs the value used."""
        if "model" not in info.data or "models" not in info.data:  # already an error there
            return section
        block = getattr(info.data["models"], info.data["model"])
        keys = RECIPE_KEYS[info.field_name]
        return section.model_copy(update={key: getattr(block, key) for key in keys if getattr(section, key) == "auto"})

    @model_validator(mode="after")
    def _smp_encoder_exists(self) -> Params:
        """Checked when model is smp only: the list comes from importing smp and timm (1.5-4 s), which every
        stage, download included, would otherwise pay for an unused block."""
        if self.model == "smp" and (problem := smp_encoder_problem(self.models.smp.encoder)):
            raise invalid("models.smp.encoder", problem)
        return self

    @model_validator(mode="after")
    def _depth_fits_the_inputs(self) -> Params:
        """A U-Net pools its input `depth` times, so a side under 2**depth pixels fails in the first training step
        (or evaluation), after the MLflow run has started: said here instead, naming what makes the input small."""
        if self.model not in POOLING_MODELS:
            return self
        depth = self.model_params().depth
        size, key = self._smallest_input()
        if 2**depth > size:
            raise invalid(f"models.{self.model}.depth", f"{depth} halves the input {depth} times, so a side needs "
                          f"at least {2**depth} pixels, but {{0}} gives {size}; use a depth of at most "
                          f"{size.bit_length() - 1}", key)
        return self

    def _smallest_input(self) -> tuple[int, str]:
        """The smallest side a model sees (training crops, test-time scales) and the key that sets it."""
        size = self.data.image_size
        smallest_scale = round(size * min(self.evaluate.tta_scales))
        inputs = [(size, "data.image_size"), (max(1, smallest_scale), "evaluate.tta_scales")]
        if 0 < self.augment.crop_size < size:
            inputs.append((self.augment.crop_size, "augment.crop_size"))
        return min(inputs)

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> Params:
        """Checked here, after `auto` took the model's epochs; with a time budget, once the epochs are resolved
        (training/budget.py)."""
        if self.train.time_budget is None and self.train.warmup_epochs >= self.train.epochs:
            raise invalid("train.warmup_epochs", f"{self.train.warmup_epochs} must be less than {{0}} "
                          f"({self.train.epochs})", "train.epochs")
        return self

    @model_validator(mode="after")
    def _freezing_needs_a_pretrained_encoder(self) -> Params:
        if self.train.freeze_encoder_epochs > 0 and self.model not in PRETRAINED_MODELS:
            raise invalid("train.freeze_encoder_epochs", f"{self.train.freeze_encoder_epochs} needs a model with a "
                          f"pretrained encoder ({', '.join(PRETRAINED_MODELS)}), got {{0}}: {self.model}", "model")
        return self
