"""Outputs are replaced whole or not at all, and what a killed run left behind is cleaned on the next run."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.atomic import atomic_dir, remove_stale_temporaries

REPO_ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from pipeline.atomic import atomic_path
with atomic_path({path!r}) as tmp:
    tmp.write_bytes(bytes(1024))
    print(tmp, flush=True)
    time.sleep(120)
"""


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


def start_writer(path: Path) -> tuple[subprocess.Popen, Path]:
    """A process inside atomic_path(path), returned with its temporary file once it has written to it."""
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO_ROOT), path=str(path))],
                               stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_a_killed_writers_temporary_is_removed_and_a_live_writers_is_kept(tmp_path: Path):
    state = tmp_path / "train_state.pt"
    killed, stale = start_writer(state)
    live, writing = start_writer(state)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        others = [tmp_path / name for name in (".train_state.pt.tmp", ".model.pt.abcd1234.tmp",
                                               "train_state.pt.abcd1234.tmp", ".train_state.pt.abcd1234.tmp.npz")]
        for other in others:  # not atomic_path's temporaries of this output
            other.write_bytes(b"keep")
        assert stale.exists() and writing.exists()
        assert remove_stale_temporaries(state) == [stale]
        assert not stale.exists() and writing.exists() and all(other.exists() for other in others)
    finally:
        live.kill()
        live.wait()
