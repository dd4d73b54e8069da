"""The built-in dataset: textured scenes of occluding shapes, written in the exact Pascal VOC 2012 layout.

Objects are saturated and backgrounds muted, so figure and ground can be told apart quickly. Each
class has a typical hue, but hues are jittered so much that neighbouring classes overlap: colour
narrows the class down, shape decides it. Object edges carry a 255 "void" band like VOC's, images
come in varied sizes, and later objects occlude earlier ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.atomic import atomic_dir
from pipeline.data.imageio import write_mask_png
from pipeline.data.labels import IGNORE_INDEX
from pipeline.data.sources.voc import CLASSES_FILE, VOC_SUBDIR

CLASSES = ["background", "disc", "square", "triangle", "star", "cross"]
BORDER_WIDTH = 3
HUE_JITTER = 0.12  # fraction of the colour wheel; class hues are 0.2 apart, so neighbours overlap


def shape_polygon(name: str, center: np.ndarray, radius: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of shape `name` around `center`; a disc is a many-sided polygon."""
    if name == "disc":
        radii, corners = np.full(48, radius), 48
    elif name == "square":
        radii, corners = np.full(4, radius), 4
    elif name == "triangle":
        radii, corners = np.full(3, radius * 1.15), 3
    elif name == "star":
        radii, corners = np.tile([radius * 1.1, radius * 0.45], 5), 10
    elif name == "cross":
        arm = radius * 0.38
        points = np.array([(-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm), (radius, arm), (arm, arm),
                           (arm, radius), (-arm, radius), (-arm, arm), (-radius, arm), (-radius, -arm), (-arm, -arm)])
        return _rotate(points, angle, center)
    else:
        raise ValueError(f"unknown synthetic shape {name!r}; known: {CLASSES[1:]}")
    theta = angle + np.linspace(0, 2 * np.pi, corners, endpoint=False)
    points = np.stack([radii * np.cos(theta), radii * np.sin(theta)], axis=1)
    return [tuple(p) for p in points + center]


def _rotate(points: np.ndarray, angle: float, center: np.ndarray) -> list[tuple[float, float]]:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [tuple(p) for p in points @ rotation.T + center]


def hsv_colour(hue: float, saturation: float, value: float) -> np.ndarray:
    """An RGB colour in 0..255 from HSV in 0..1."""
    pixel = np.array([[[hue % 1.0, saturation, value]]]) * 255
    return np.asarray(Image.fromarray(pixel.astype(np.uint8), "HSV").convert("RGB"), dtype=np.float32)[0, 0]


def texture(rng: np.random.Generator, height: int, width: int, base: np.ndarray, contrast: float) -> np.ndarray:
    """Smooth colour noise plus stripes around colour `base`: HxWx3 float."""
    coarse = rng.normal(0, 1, (rng.integers(3, 9), rng.integers(3, 9), 3))
    noise = np.asarray(Image.fromarray(((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8))
                       .resize((width, height), Image.BICUBIC), dtype=np.float32) / 255 - 0.5
    yy, xx = np.mgrid[0:height, 0:width]
    direction = rng.uniform(0, np.pi)
    period = rng.uniform(6, 30)
    stripes = np.sin((xx * np.cos(direction) + yy * np.sin(direction)) * 2 * np.pi / period)[..., None]
    fine = rng.normal(0, 0.06, (height, width, 3))
    return base + contrast * (noise * 120 + stripes * rng.uniform(0, 25) + fine * 255)


def render_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (HxWx3 uint8) and its mask (HxW uint8 class indices with 255 borders)."""
    width, height = int(rng.integers(200, 400)), int(rng.integers(180, 380))
    background = hsv_colour(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.9))
    image = texture(rng, height, width, background, contrast=rng.uniform(0.3, 0.8))
    labels = Image.new("L", (width, height), 0)
    label_draw = ImageDraw.Draw(labels)
    for _ in range(int(rng.integers(1, 6))):
        class_index = int(rng.integers(1, len(CLASSES)))
        radius = rng.uniform(0.07, 0.3) * min(width, height)
        center = rng.uniform([0, 0], [width, height])
        polygon = shape_polygon(CLASSES[class_index], center, radius, rng.uniform(0, 2 * np.pi))
        object_mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(object_mask).polygon(polygon, fill=255)
        box = object_mask.getbbox()
        if box is None:  # entirely outside the image
            continue
        left, top, right, bottom = box
        inside = np.asarray(object_mask.crop(box), dtype=bool)
        hue = class_index / (len(CLASSES) - 1) + rng.uniform(-HUE_JITTER, HUE_JITTER)
        colour = hsv_colour(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
        region = image[top:bottom, left:right]
        region[inside] = texture(rng, bottom - top, right - left, colour, contrast=rng.uniform(0.1, 0.35))[inside]
        label_draw.polygon(polygon, fill=class_index)
    image = np.asarray(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8)))
    mask = np.asarray(labels).copy()
    size = 2 * BORDER_WIDTH - 1
    edges = np.asarray(labels.filter(ImageFilter.MaxFilter(size))) != np.asarray(labels.filter(ImageFilter.MinFilter(size)))
    mask[edges] = IGNORE_INDEX
    return image, mask


# Each split draws from its own seed stream: sample i of train depends on (seed, i), sample i of val on
# (seed, i, VAL_STREAM). So data.synthetic.num_train never changes the val images, and models trained on more or
# fewer images stay comparable in the registry (tracking/registry.py compares val data by digest). The stream comes
# last and is not 0: numpy's SeedSequence reads (seed, 1, 0) as (seed, 1), train's sample 1.
VAL_STREAM = 1


def split_samples(num_train: int, num_val: int, seed: int) -> dict[str, list[tuple[str, list[int]]]]:
    """(sample id, seed sequence) of each sample of each split."""
    return {"train": [(f"synth_{i:05d}", [seed, i]) for i in range(num_train)],
            "val": [(f"synth_val_{i:05d}", [seed, i, VAL_STREAM]) for i in range(num_val)]}


def generate(out_dir: Path, num_train: int, num_val: int, seed: int) -> None:
    """Write the dataset under `out_dir/VOCdevkit/VOC2012`; each split's samples come from its own seed stream."""
    with atomic_dir(out_dir) as tmp:
        root = tmp / VOC_SUBDIR
        (root / "JPEGImages").mkdir(parents=True)
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        splits = split_samples(num_train, num_val, seed)
        for sample_id, sample_seed in splits["train"] + splits["val"]:
            image, mask = render_scene(np.random.default_rng(sample_seed))
            Image.fromarray(image).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=90)
            write_mask_png(mask, root / "SegmentationClass" / f"{sample_id}.png")
        lists = {split: [sample_id for sample_id, _ in samples] for split, samples in splits.items()}
        ids = lists["train"] + lists["val"]
        for split, split_ids in lists.items():
            (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(split_ids) + "\n")
        (root / "ImageSets" / "Segmentation" / "trainval.txt").write_text("\n".join(ids) + "\n")
        (root / CLASSES_FILE).write_text("\n".join(CLASSES) + "\n")
