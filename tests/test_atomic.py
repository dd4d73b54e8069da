"""Outputs are replaced whole or not at all, and what a killed run left behind is cleaned on the next run."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.atomic import atomic_dir


def test_a_failing_block_keeps_the_old_output_and_leaves_no_temporary(tmp_path: Path):
    out = tmp_path / "processed"
    with atomic_dir(out) as tmp:
        (tmp / "a.npy").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.npy").write_text("half")
        raise RuntimeError("killed")
    assert (out / "a.npy").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["processed"]


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path: Path):
    stale = tmp_path / ".processed.abc123.tmp"  # what SIGKILL mid-write leaves: no finally ran
    (stale / "train_images.npy").parent.mkdir()
    (stale / "train_images.npy").write_bytes(b"\0" * 1024)
    other = tmp_path / ".interim.def456.tmp"
    other.mkdir()
    with atomic_dir(tmp_path / "processed") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not stale.exists() and other.exists()  # only leftovers of the same output
