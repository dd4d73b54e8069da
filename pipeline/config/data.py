"""The `data` section: which dataset, where its files are, the side images are resized to, and each source's block
(`data.<dataset>`; only the chosen one is read)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from pipeline.config.types import (
    BadSamplePolicy,
    Block,
    Bool,
    Byte,
    ClassNames,
    DatasetName,
    Float,
    Images,
    Seed,
    Side,
    Str,
)


class SyntheticParams(Block):
    num_train: Images = 90  # small enough for a CPU run of a few minutes
    num_val: Images = 60
    seed: Seed = 0


class Voc2012Params(Block):
    # tried in order, each checked against the MD5: add mirrors here
    urls: list[Str] = ["http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"]
    trainaug: Bool = False  # train on the 10582-image SBD set (needs SegmentationClassAug + trainaug.txt)


class Ade20kParams(Block):
    urls: list[Str] = ["http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"]


class VocLayoutParams(Block):
    classes: ClassNames = None  # class names when the root has no classes.txt


class SingleClassParams(Block):
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2  # per class, for folders without train/ and val/
    split_seed: Seed = 0


class FolderParams(Block):
    """data.root/images/* + data.root/masks/*, paired by file stem (pipeline/data/sources/folder.py)."""
    classes: ClassNames = None  # class names, when data.root has no classes.txt
    colors: dict[Str, tuple[Byte, Byte, Byte]] | None = None  # RGB-coded masks: class name -> [R, G, B]
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2  # without train/ and val/ subfolders
    split_seed: Seed = 0


# the repository's own empty datasets/ folder: the default data.root, which DVC needs to be a path it can hash
# (a templated dependency cannot be empty) and which means "no folder of yours"
NO_ROOT = "datasets"


class SubsetParams(Block):
    train: Images | None = None  # a seeded random subset of this many training images; null: all
    val: Images | None = None


class DataParams(Block):
    dataset: DatasetName = "synthetic"
    # your dataset folder (voc_layout, single_class, folder), an unpacked VOC/ADE20K copy or an s3:// prefix; a path is
    # absolute or relative to the repository. A dependency of download: DVC sees its files change. The default,
    # datasets (an empty folder of this repository), means none: synthetic is generated, voc2012 and ade20k downloaded
    root: Str = NO_ROOT
    download_dir: Str = "data/downloads"  # archives land here; an archive downloaded by hand and put here is used
    image_size: Side = 256
    on_bad_sample: BadSamplePolicy = "error"
    subset: SubsetParams = Field(default_factory=SubsetParams)
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    voc2012: Voc2012Params = Field(default_factory=Voc2012Params)
    ade20k: Ade20kParams = Field(default_factory=Ade20kParams)
    voc_layout: VocLayoutParams = Field(default_factory=VocLayoutParams)
    single_class: SingleClassParams = Field(default_factory=SingleClassParams)
    folder: FolderParams = Field(default_factory=FolderParams)

    @field_validator("root", mode="before")
    @classmethod
    def _empty_root_is_none(cls, root: Any) -> Any:
        """`root:` left empty (as params.yaml had it) means no folder of yours, as NO_ROOT does."""
        return NO_ROOT if root is None else root

    @property
    def own_root(self) -> str | None:
        """`root` when it names a folder of the user's; None for NO_ROOT."""
        return None if Path(self.root) == Path(NO_ROOT) else self.root
