"""params.yaml is written the way DVC writes it, so `dvc exp run -S` changes only the line it sets and
`dvc exp apply` diffs show only real changes."""
from __future__ import annotations

import shutil
from pathlib import Path

from dvc.utils.serialize import modify_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_dvc_rewrites_params_yaml_without_noise(tmp_path: Path):
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", copy)
    with modify_yaml(copy) as params:  # what `dvc exp run -S` does, here setting nothing
        assert params["model"]
    assert copy.read_text() == (REPO_ROOT / "params.yaml").read_text()


def test_one_set_value_changes_one_line(tmp_path: Path):
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", copy)
    with modify_yaml(copy) as params:
        params["train"]["epochs"] = 99
    before, after = (REPO_ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    assert len(before) == len(after)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    assert len(changed) == 1, changed
    old, new = changed[0]
    assert old.strip().startswith("epochs:") and new.split("#")[0].split() == ["epochs:", "99"]
    assert new.split("#", 1)[1] == old.split("#", 1)[1], "the comment stays"
