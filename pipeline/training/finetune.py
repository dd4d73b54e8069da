"""Start from an earlier model (`train.init_from`): copy every tensor whose name and shape match."""
from __future__ import annotations

import logging

from pipeline.models.checkpoint import CheckpointError, load_model
from pipeline.models.segmenter import SegmentationModel

log = logging.getLogger(__name__)


def initial_weights(source: str) -> dict:
    """A state dict from a checkpoint path or an MLflow model URI (`runs:/...`, `models:/name@champion`); a source
    that is not one is a user error naming the key (one line from the stage, no traceback)."""
    try:
        return load_model(source).state_dict()
    except (ValueError, FileNotFoundError) as error:
        raise CheckpointError(f"train.init_from: {error}") from error


def load_matching_weights(model: SegmentationModel, weights: dict, source: str) -> None:
    """Copy every tensor whose name and shape match; a new head for other classes starts fresh."""
    own = model.state_dict()
    matching = {name: value for name, value in weights.items() if name in own and own[name].shape == value.shape}
    if not matching:
        raise ValueError(f"train.init_from: no weights in {source} match the {type(model.network).__name__} "
                         f"being trained; is it the same architecture (model and models.<model>)?")
    model.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    log.info(f"init_from {source}: loaded {len(matching)} tensors" + (f", kept fresh: {skipped}" if skipped else ""))
