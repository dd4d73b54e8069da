"""Issue 32, what the pipeline writes: a full disk or a file-size limit (`ulimit -f`) while writing the train state,
the model or predict's masks is one line that names the file, and the file it was to replace is untouched; long
class names are cut short on overlays; the synthetic val split does not change with the train split's size."""
from __future__ import annotations

import hashlib
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import predict
from pipeline.data.sources import synthetic
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.registry import build_model
from pipeline.reporting.labels import MAX_SHOWN
from tests.logged_model import UNET_PARAMS

REPO_ROOT = Path(__file__).resolve().parents[1]
FILE_LIMIT = 4096  # bytes: RLIMIT_FSIZE for the writer's process, smaller than a tiny model


def file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))


def tiny_checkpoint(path: Path, class_names: list[str]) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model("unet", class_names, UNET_PARAMS, 64).eval(), "unet", UNET_PARAMS)
    return path


WRITERS = {
    "train state": "from pipeline.training.state import TrainState; "
                   "TrainState('f', model={'w': torch.zeros(100_000)}).save(path)",
    "model": "from pipeline.models.checkpoint import save_checkpoint; "
             "from pipeline.models.registry import build_model; from tests.logged_model import UNET_PARAMS; "
             "save_checkpoint(path, build_model('unet', ['a', 'b'], UNET_PARAMS, 64), 'unet', UNET_PARAMS)",
}


@pytest.mark.parametrize("what", WRITERS)
def test_a_file_size_limit_while_saving_is_one_line_and_the_old_file_stays(tmp_path, what):
    """Before: `OSError: File too large`, then a second traceback from save_torch_file, 44 lines."""
    path = tmp_path / "out.pt"
    path.write_bytes(b"the previous file")
    code = ("import sys, torch; from pathlib import Path; from pipeline.atomic import NoSpaceError; "
            f"path = Path(sys.argv[1])\ntry:\n    {WRITERS[what]}\n"
            "except NoSpaceError as error:\n    sys.exit(str(error))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                            preexec_fn=file_limit, timeout=120)
    assert (result.returncode, result.stderr) == (1, f"no space left writing {path} (File too large); nothing was "
                                                     "replaced\n")
    assert path.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]  # no temporary left behind


def test_predict_out_of_space_is_one_line(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "model.pt", ["background", "thing"])
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)).save(tmp_path / "photo.png")
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", str(tmp_path / "photo.png"), "--model",
                             str(checkpoint), "--out", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True,
                            text=True, preexec_fn=file_limit, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: no space left writing {tmp_path / 'out'}/photo_")
    assert result.stderr.endswith("(File too large); nothing was replaced\n")


def test_long_class_names_are_cut_on_the_overlay(tmp_path):
    """Five names of 100,000 characters drew a 500,033-pixel-wide overlay; model files now hold at most 100, and
    what is drawn is cut at MAX_SHOWN."""
    names = [f"{i}" + "n" * 99 for i in range(5)]
    checkpoint = tiny_checkpoint(tmp_path / "model.pt", names)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(tmp_path / "photo.png")
    assert predict.main([str(tmp_path / "photo.png"), "--model", str(checkpoint), "--out", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "photo_overlay.png") as overlay:
        assert overlay.width <= 8 * MAX_SHOWN + 40  # the widest legend entry: a swatch and a cut name


def digests(folder: Path, split: str) -> dict[str, str]:
    root = folder / "VOCdevkit" / "VOC2012"
    ids = (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    return {i: hashlib.sha256((root / "JPEGImages" / f"{i}.jpg").read_bytes()
                              + (root / "SegmentationClass" / f"{i}.png").read_bytes()).hexdigest() for i in ids}


def test_the_synthetic_val_split_does_not_change_with_num_train(tmp_path):
    """Before, more train images shifted the val ones: every later run was 'not comparable' with the first champion."""
    synthetic.generate(tmp_path / "few", num_train=2, num_val=3, seed=7)
    synthetic.generate(tmp_path / "more", num_train=5, num_val=3, seed=7)
    assert digests(tmp_path / "few", "val") == digests(tmp_path / "more", "val")
    few_train = digests(tmp_path / "few", "train")
    assert few_train.items() <= digests(tmp_path / "more", "train").items()
    assert not set(few_train.values()) & set(digests(tmp_path / "few", "val").values())  # no image in both splits
