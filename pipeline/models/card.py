"""The model card: what a registered model version is, how it was made, how well it does and what it is not for.

MLflow shows it as the version's description and keeps it as `model_card.md` beside the model's files. The train
stage writes it when it registers the version, before any evaluation exists; the evaluate stage later replaces the
card's Evaluation section with its scores at the original resolution (`with_section`), so the card always says
what is known, and which stage still has to run.
"""
from __future__ import annotations

import re

EVALUATION = "Evaluation"
FILE_NAME = "model_card.md"
SCORES = (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean class accuracy"),
          ("fw_iou", "frequency-weighted IoU"), ("loss", "loss"))


def training_card(name: str, params, manifest: dict, data_digest: str, partial: bool, images_used: dict[str, int],
                  resolved: dict, best: dict, seconds: float, last_epoch: int, resumed_after: int) -> str:
    """The card as the train stage knows it: data, recipe, machine, the best epoch's val scores, the time it took.

    `params` are the run's Params, `manifest` the processed data's manifest.json, `images_used` the train and val
    images the training saw, `resolved` what reports/train/resolved.json holds and how the machine ran it (threads,
    processes), `best` reports/train/metrics.json."""
    sections = {
        "Data": data_section(params, manifest, data_digest, partial, images_used),
        "Recipe": recipe_section(params, resolved),
        "Training": training_section(params, best, seconds, last_epoch, resumed_after, manifest["image_size"]),
        EVALUATION: "Not evaluated yet: the evaluate stage fills this in when `dvc repro` runs it after training. DVC "
                    "skips it when this model is byte for byte the one `reports/eval` was computed from (retrained "
                    "on the same kind of machine): `dvc repro -f --downstream evaluate` attaches the scores here.",
        "Intended use and limits": limits_section(name, params, manifest, partial),
    }
    return f"# {name}\n\n" + "".join(f"## {title}\n\n{body}\n\n" for title, body in sections.items())


def data_section(params, manifest: dict, data_digest: str, partial: bool, images_used: dict[str, int]) -> str:
    splits = {split: len(entry["ids"]) for split, entry in manifest["splits"].items()}
    sizes = ", ".join(f"{split} {count}" + (f" (trained on a seeded subset of {images_used[split]})"
                                            if images_used.get(split, count) != count else "")
                      for split, count in splits.items())
    classes = manifest["classes"]
    lines = [f"- Dataset: `{params.data.dataset}`" + (f" from `{params.data.own_root}`" if params.data.own_root else ""),
             f"- Digest of the processed arrays: `{data_digest}` (the run's dataset input in MLflow)",
             f"- Images: {sizes}, resized to {manifest['image_size']}×{manifest['image_size']}",
             f"- Classes ({len(classes)}): " + ", ".join(f"`{name}`" for name in classes),
             "- Labels: " + ("partial: each image is labelled for some classes only (merged single-class sets)"
                             if partial else "every pixel labelled with one class, or 255 (ignored)")]
    return "\n".join(lines)


def recipe_section(params, resolved: dict) -> str:
    """The values that make the result, `auto` already resolved (every param is on the MLflow run)."""
    recipe, augment = params.train, params.augment
    architecture = ", ".join(f"{key}={value}" for key, value in params.model_params().architecture().items())
    rows = [("model", f"`{params.model}` ({architecture})"),
            *([("fine-tuned from", f"`{recipe.init_from}`")] if recipe.init_from else []),
            ("epochs", recipe.epochs), ("batch size", f"{recipe.batch_size} per process, "
                                                      f"{resolved['global_batch_size']} in all"),
            ("optimizer", f"{recipe.optimizer}, lr {recipe.lr:g}, weight decay {recipe.weight_decay:g}"),
            ("schedule", f"{recipe.scheduler}, {recipe.warmup_epochs} warmup epochs"),
            ("loss", recipe.loss + (f", class weights {recipe.class_weights}" if recipe.class_weights else "")),
            ("crops", f"{augment.crops_per_image} per image, " + (f"{augment.crop_size}²" if augment.crop_size
                                                                   else "whole images")),
            ("augmentation", f"hflip {augment.hflip:g}, affine {augment.affine:g}, "
                             f"colour jitter {augment.color_jitter:g}"),
            ("seed", recipe.seed),
            ("device", f"{resolved['device']}, {resolved['num_processes']} process(es), "
                       f"{resolved['num_threads']} threads each"),
            ("precision", resolved["precision"])]
    return table(("setting", "value"), rows)


def training_section(params, best: dict, seconds: float, last_epoch: int, resumed_after: int, image_size: int) -> str:
    stopped = (f"{last_epoch} of {params.train.epochs} epochs (stopped early)" if last_epoch < params.train.epochs
               else f"{last_epoch} epoch" + ("s" if last_epoch != 1 else ""))
    resumed = f" (resumed after epoch {resumed_after}: the time counts only the epochs after it)" if resumed_after else ""
    return "\n".join([
        f"- Trained {stopped} in {seconds / 60:.1f} min ({seconds:.0f} s){resumed}",
        f"- Best epoch {best['best_epoch']}, kept as the model: val mIoU {best['val_miou']:.4f}, pixel accuracy "
        f"{best['val_pixel_accuracy']:.4f}, loss {best['val_loss']:.4f} (at {image_size}×{image_size}, in the "
        "training precision)"])


def evaluation_section(metrics: dict, per_class_iou: dict[str, float | None]) -> str:
    """The evaluate stage's scores (reports/eval/metrics.json, per_class_iou.json) at each mask's original size."""
    has_test = any(name.startswith("test_") for name in metrics)
    header = ("metric", "val", "test") if has_test else ("metric", "val")
    rows = [(label, f"{metrics[key]:.4f}", *([f"{metrics[f'test_{key}']:.4f}"] if has_test else []))
            for key, label in SCORES]
    classes = [(name, "absent from val" if iou is None else f"{iou:.4f}") for name, iou in per_class_iou.items()]
    return ("Scores at each mask's original resolution (the VOC/ADE20K protocol), the model in fp32:\n\n"
            + table(header, rows) + "\n\nPer-class IoU on val:\n\n" + table(("class", "IoU"), classes))


def limits_section(name: str, params, manifest: dict, partial: bool) -> str:
    size, classes = manifest["image_size"], len(manifest["classes"])
    lines = [f"- Use: segmenting the {classes} classes above in images like those of `{params.data.dataset}`. There is "
             "no 'unknown' class: every pixel of any image gets one of these, so images from another domain get "
             "confident wrong labels.",
             f"- Resolution: images are resized to {size}×{size} (`pipeline.predict` does it and resizes the masks "
             "back): detail finer than that is lost, and other aspect ratios are squeezed into the square."]
    if params.data.dataset == "synthetic":
        lines.append("- Trained on generated shapes: a demonstration of the pipeline, not a model for photographs.")
    if partial:
        lines.append("- Partial labels: each class was learnt from the images labelled for it, so on a new image the "
                     "model can name classes that never occur in that kind of image; its scores count each class "
                     "only on the images labelled for it.")
    if params.data.subset.val is not None:
        lines.append("- Its val scores come from a `data.subset.val` subset: not comparable with full-val runs, and "
                     "never `champion`.")
    lines.append(f"- Loading: `python -m pipeline.predict --model \"models:/{name}/<version>\"` reads the weights "
                 "alone; `mlflow.pyfunc.load_model` runs the code logged with the model: for stores you trust.")
    return "\n".join(lines)


def with_section(card: str, title: str, body: str) -> str:
    """`card` with the body of section `title` replaced (appended when the card has no such section)."""
    pattern = re.compile(rf"(^## {re.escape(title)}\n\n).*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(card):
        return pattern.sub(lambda match: match.group(1) + body + "\n\n", card, count=1)
    return card.rstrip("\n") + f"\n\n## {title}\n\n{body}\n"


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
