"""Figures for people: per-class IoU, sample predictions, training curves, confusion matrix, and a GIF
of the predictions improving epoch by epoch. Each function writes one file atomically.

Masks are drawn in the VOC palette (`colorize`), the same colours as the predicted mask PNGs; 255
(ignored pixels) keeps its palette colour and is labelled "ignore" in legends.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.atomic import atomic_path  # noqa: E402
from pipeline.data.labels import IGNORE_INDEX  # noqa: E402
from pipeline.data.palette import colorize, voc_palette  # noqa: E402
from pipeline.reporting.labels import short_name  # noqa: E402
from pipeline.training.reports import HISTORY_COLUMNS  # noqa: E402

DPI = 100
CONFUSION_LABELLED_MAX = 40  # above this many classes, tick labels would overlap: show indices instead
CONFUSION_ANNOTATED_MAX = 12  # above this, numbers in the cells are too small to read
GIF_FRAME_MS = 800
LEGEND_MAX = 40  # palette legend entries; more would dwarf the images


def _save(fig: plt.Figure, path: Path) -> None:
    """Atomically write `fig` as a PNG and free it (figures are not garbage-collected under pyplot)."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def _class_label(index: int, class_names: Sequence[str]) -> str:
    if index == IGNORE_INDEX:
        return "ignore"
    return short_name(class_names[index]) if index < len(class_names) else f"class {index}"


def _legend_handles(masks: Sequence[np.ndarray], class_names: Sequence[str]) -> list[Patch]:
    """Patches for the palette colours that occur in `masks`, in class order; beyond LEGEND_MAX the
    most frequent classes are kept and a last entry says how many were left out."""
    counts = np.bincount(np.concatenate([mask.ravel() for mask in masks]), minlength=256)
    present = np.flatnonzero(counts)
    kept = np.sort(present[np.argsort(-counts[present], kind="stable")[:LEGEND_MAX]])
    palette = voc_palette() / 255
    handles = [Patch(facecolor=palette[index], edgecolor="black", linewidth=0.5,
                     label=_class_label(int(index), class_names)) for index in kept]
    if len(present) > len(kept):
        handles.append(Patch(facecolor="white", edgecolor="white",
                             label=f"(+{len(present) - len(kept)} rarer classes)"))
    return handles


def _mask_grid_figure(images: Sequence[np.ndarray], rows: Sequence[tuple[str, Sequence[np.ndarray]]],
                      class_names: Sequence[str], legend_masks: Sequence[np.ndarray] | None = None) -> plt.Figure:
    """Row 0 the images, then one row per (label, masks) in the VOC colours, and below a legend of the
    colours in `legend_masks` (default: the masks drawn). The figure grows to fit the legend."""
    handles = _legend_handles(legend_masks or [mask for _, masks in rows for mask in masks], class_names)
    width = 2.2 * len(images) + 0.6
    label_chars = max(len(handle.get_label()) for handle in handles)
    columns = max(1, min(len(handles), int((width - 0.2) / (0.7 + 0.08 * label_chars))))
    legend_height = 0.25 * math.ceil(len(handles) / columns) + 0.2
    row_height = 2.2 * float(np.median([image.shape[0] / image.shape[1] for image in images])) + 0.35
    fig = plt.figure(figsize=(width, row_height * (1 + len(rows)) + 0.5 + legend_height), layout="constrained")
    axes = fig.subplots(1 + len(rows), len(images), squeeze=False)
    for column, image in enumerate(images):
        axes[0, column].imshow(image)
        for row, (_, masks) in enumerate(rows, start=1):
            axes[row, column].imshow(colorize(masks[column]), interpolation="nearest")
    for row, label in enumerate(["input", *(label for label, _ in rows)]):
        axes[row, 0].set_ylabel(label, fontsize=11)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize=9, frameon=False)
    return fig


def plot_per_class_iou(per_class_iou: dict[str, float], path: Path) -> None:
    """Horizontal bars, best class on top, value beside each bar. Classes with NaN IoU (absent from
    truth and prediction) get no bar and are named in a note. The figure grows with the class count,
    so all 150 ADE20K names stay legible."""
    scored = sorted(((name, value) for name, value in per_class_iou.items() if not math.isnan(value)),
                    key=lambda item: item[1])
    absent = [name for name, value in per_class_iou.items() if math.isnan(value)]
    height = max(3.0, 1.6 + 0.22 * len(scored))
    fig, axis = plt.subplots(figsize=(8, height), layout="constrained")
    if scored:
        names, values = zip(*((short_name(name), value) for name, value in scored))
        positions = np.arange(len(scored))
        axis.barh(positions, values, color="tab:blue", height=0.7)
        axis.set_yticks(positions, names, fontsize=8)
        for position, value in zip(positions, values):
            axis.text(value + 0.01, position, f"{value:.3f}", va="center", fontsize=7,
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
        mean = float(np.mean(values))
        axis.axvline(mean, color="tab:red", linestyle="--", linewidth=1, zorder=0, label=f"mIoU {mean:.3f}")
        axis.legend(loc="lower right", fontsize=8)
        axis.set_ylim(-0.6, len(scored) - 0.4)
        axis.set_title(f"Per-class IoU: mIoU {mean:.3f} over {len(scored)} of {len(per_class_iou)} classes")
        if len(scored) > 40:  # a tall figure: repeat the IoU scale on top
            axis.tick_params(axis="x", top=True, labeltop=True)
    else:
        axis.set_yticks([])
        axis.text(0.5, 0.5, "no class occurs in truth or prediction", ha="center", va="center",
                  transform=axis.transAxes)
        axis.set_title("Per-class IoU")
    axis.set_xlim(0, 1.1)
    axis.set_xlabel("IoU")
    if absent:
        shown = ", ".join(absent[:8]) + (f" and {len(absent) - 8} more" if len(absent) > 8 else "")
        fig.text(0.01, 0.0, f"n/a (absent from truth and prediction, not in mIoU): {shown}",
                 fontsize=8, ha="left", va="bottom", wrap=True)
        fig.get_layout_engine().set(h_pad=0.25)
    _save(fig, path)


def plot_sample_predictions(images: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                            predictions: Sequence[np.ndarray], class_names: Sequence[str], path: Path) -> None:
    """One column per sample; rows input / ground truth / prediction (pixel accuracy in the title)."""
    if not (len(images) == len(truths) == len(predictions)) or not images:
        raise ValueError(f"need as many images, truths and predictions (>0), got "
                         f"{len(images)}, {len(truths)}, {len(predictions)}")
    fig = _mask_grid_figure(images, [("ground truth", truths), ("prediction", predictions)], class_names)
    for axis, truth, prediction in zip(fig.axes[2 * len(images):], truths, predictions):
        valid = truth != IGNORE_INDEX
        accuracy = float((prediction[valid] == truth[valid]).mean()) if valid.any() else float("nan")
        axis.set_title(f"pixel acc {accuracy:.2f}", fontsize=9)
    fig.suptitle("Sample predictions")
    _save(fig, path)


def plot_training_history(history: pd.DataFrame, path: Path) -> None:
    """Losses, validation mIoU and pixel accuracy, and the learning rate (log scale), per epoch.
    Markers keep a single epoch visible; the best epoch by val mIoU is marked."""
    missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
    if missing:
        raise ValueError(f"training history lacks columns {missing}; has {list(history.columns)}")
    if history.empty:
        raise ValueError("training history has no rows")
    epochs = history["epoch"]
    best = history.loc[history["val_miou"].idxmax()]
    fig, (loss_axis, score_axis, lr_axis) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    loss_axis.plot(epochs, history["train_loss"], "o-", label="train", markersize=3)
    loss_axis.plot(epochs, history["val_loss"], "s-", label="validation", markersize=3)
    loss_axis.set(title="Loss", ylabel="loss")
    score_axis.plot(epochs, history["val_miou"], "o-", label="val mIoU", markersize=3)
    score_axis.plot(epochs, history["val_pixel_accuracy"], "s-", label="val pixel accuracy", markersize=3)
    score_axis.set(title=f"Validation scores (best mIoU {best['val_miou']:.3f} at epoch {int(best['epoch'])})",
                   ylabel="score", ylim=(0, 1.02))
    for axis in (loss_axis, score_axis):
        if len(history) > 1:
            axis.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1, label="best epoch")
        axis.legend(fontsize=8)
    lr_axis.plot(epochs, history["lr"], "o-", color="tab:green", markersize=3)
    if (history["lr"] > 0).all():
        lr_axis.set_yscale("log")
        lr_axis.set_title("Learning rate (log scale)")
    else:
        lr_axis.set_title("Learning rate (linear: it reaches 0)")
    lr_axis.set_ylabel("learning rate")
    for axis in (loss_axis, score_axis, lr_axis):
        axis.set_xlabel("epoch")
        axis.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)  # also gives a single epoch a sane axis
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.grid(alpha=0.3)
    _save(fig, path)


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Row-normalised counts (rows = truth): each row shows where a true class's pixels went. Rows of
    classes absent from the truth are grey. Names on both axes up to CONFUSION_LABELLED_MAX classes,
    class indices beyond that."""
    confusion = np.asarray(confusion, dtype=np.float64)
    count = len(class_names)
    if confusion.shape != (count, count):
        raise ValueError(f"confusion matrix shape {confusion.shape} does not match {count} class names")
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.ma.masked_invalid(confusion / totals)
    side = min(16.0, max(6.0, 2.5 + 0.32 * count))
    fig, axis = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    cmap = plt.get_cmap("Blues").with_extremes(bad="lightgrey")
    shown = axis.imshow(normalised, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(shown, ax=axis, shrink=0.8, label="fraction of the true class's pixels")
    if count <= CONFUSION_LABELLED_MAX:
        fontsize = 9 if count <= 21 else 7
        class_names = [short_name(name) for name in class_names]
        axis.set_xticks(range(count), class_names, rotation=60, ha="right", rotation_mode="anchor",
                        fontsize=fontsize)
        axis.set_yticks(range(count), class_names, fontsize=fontsize)
        axis.set(xlabel="predicted class", ylabel="true class")
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
        axis.set(xlabel="predicted class index", ylabel="true class index (names left out: too many)")
    if count <= CONFUSION_ANNOTATED_MAX:
        for (row, column), value in np.ndenumerate(normalised.filled(np.nan)):
            if not math.isnan(value):
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if value > 0.5 else "black")
    absent = "" if totals.all() else "\ngrey rows: class absent from the ground truth"
    axis.set_title(f"Confusion matrix, row-normalised ({count} classes){absent}")
    _save(fig, path)


def _render_rgb(fig: plt.Figure) -> Image.Image:
    """The figure as an RGB image, then freed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def save_progress_gif(images: Sequence[np.ndarray], snapshots: Sequence[tuple[int, Sequence[np.ndarray]]],
                      class_names: Sequence[str], path: Path) -> None:
    """A GIF with one frame per (epoch, predictions) snapshot: the same images above their predictions
    at that epoch, so one can watch the model learn. The legend lists every class predicted in any
    snapshot, so the layout (and the colours) stay put from frame to frame."""
    if not snapshots or not images:
        raise ValueError("need at least one image and one snapshot for a progress GIF")
    all_masks = [mask for _, masks in snapshots for mask in masks]
    frames = []
    for epoch, masks in snapshots:
        if len(masks) != len(images):
            raise ValueError(f"snapshot of epoch {epoch} has {len(masks)} masks for {len(images)} images")
        fig = _mask_grid_figure(images, [("prediction", masks)], class_names, legend_masks=all_masks)
        fig.suptitle(f"Predictions after epoch {epoch}", fontsize=13)
        frames.append(_render_rgb(fig))
    # One shared palette without dithering: mask colours stay exact and do not flicker between frames.
    first = frames[0].quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    paletted = [first] + [frame.quantize(palette=first, dither=Image.Dither.NONE) for frame in frames[1:]]
    durations = [GIF_FRAME_MS] * (len(paletted) - 1) + [GIF_FRAME_MS * 3]  # linger on the final epoch
    with atomic_path(Path(path)) as tmp:
        paletted[0].save(tmp, format="GIF", save_all=True, append_images=paletted[1:], duration=durations,
                         loop=0, optimize=False)
