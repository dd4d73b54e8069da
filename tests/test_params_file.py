"""params.yaml is written the way DVC writes it, so `dvc exp run -S` changes only the lines it sets and
`dvc exp apply` diffs show only real changes."""
from __future__ import annotations

import shutil
from pathlib import Path

from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import modify_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def set_params(tmp_path: Path, *overrides: str) -> tuple[list[str], list[str]]:
    """The committed params.yaml's lines and a copy's after `dvc exp run -S <overrides>` wrote them."""
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", copy)
    apply_overrides(str(copy), list(overrides))  # what `dvc exp run -S` calls
    return (REPO_ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()


def test_dvc_rewrites_params_yaml_without_noise(tmp_path: Path):
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", copy)
    with modify_yaml(copy) as params:  # DVC's reader and writer, here setting nothing
        assert params["model"]
    assert copy.read_text() == (REPO_ROOT / "params.yaml").read_text()


def test_one_set_value_changes_one_line(tmp_path: Path):
    before, after = set_params(tmp_path, "train.epochs=99")
    assert len(before) == len(after)  # no blank line lost (ruamel drops one after a block list ending a section)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert len(changed) == 1, changed
    old, new = changed[0]
    assert old.strip().startswith("epochs:") and new.split("#")[0].split() == ["epochs:", "99"]
    assert new.split("#", 1)[1] == old.split("#", 1)[1], "the comment stays"


def test_a_setting_added_with_plus_plus_adds_its_lines_only(tmp_path: Path):
    before, after = set_params(tmp_path, "++models.smp.encoder=efficientnet-b0", "++train.momentum=0.95")
    added = [line for line in after if line not in before]
    assert [line.strip() for line in added] == ["smp:", "encoder: efficientnet-b0", "momentum: 0.95"], added
    assert [line for line in before if line not in after] == ["  smp: {}"]
