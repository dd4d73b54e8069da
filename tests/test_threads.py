"""train.num_threads: auto: trainings running at once share the cores, and a killed one stops counting."""
import signal
import subprocess
import sys

import pytest
import torch

from pipeline.training.threads import ThreadShare, fair_share, share_cores
from tests.conftest import REPO_ROOT

HOLD_SLOT = ("import sys, time; from pathlib import Path; from pipeline.training.threads import ThreadShare; "
             "share = ThreadShare(Path(sys.argv[1])); print('holding', flush=True); time.sleep(120)")


@pytest.mark.parametrize(("cores", "trainings", "threads"), [(2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 3, 2), (16, 4, 4)])
def test_each_training_gets_an_equal_share_and_at_least_one_thread(cores, trainings, threads):
    assert fair_share(cores, trainings) == threads


def start_training_process(slot_dir) -> subprocess.Popen:
    """Another process holding a slot, as a running training does."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_SLOT, str(slot_dir)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_concurrent_trainings_share_the_cores_and_a_killed_one_stops_counting(tmp_path):
    share = ThreadShare(tmp_path, cores=4)
    assert (share.trainings(), share.threads()) == (1, 4)
    others = [start_training_process(tmp_path) for _ in range(2)]
    try:
        assert (share.trainings(), share.threads()) == (3, 1)
        others[0].send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops its lock
        others[0].wait()
        assert (share.trainings(), share.threads()) == (2, 2)
    finally:
        for process in others:
            process.kill()
            process.wait()
    assert share.trainings() == 1
    share.release()
    assert ThreadShare(tmp_path, cores=4).trainings() == 1  # the released slot is free for the next training


def test_a_slot_freed_by_a_finished_training_is_reused(tmp_path):
    with ThreadShare(tmp_path, cores=2):
        pass
    with ThreadShare(tmp_path, cores=2) as share:
        assert share.trainings() == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["slot-0"]


def test_refresh_follows_the_share_as_trainings_start(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.training.threads.RECHECK_SECONDS", 0.0)
    before = torch.get_num_threads()
    try:
        with ThreadShare(tmp_path, cores=2) as share:
            assert torch.get_num_threads() == 2
            other = start_training_process(tmp_path)
            try:
                assert share.refresh() == 1
            finally:
                other.kill()
                other.wait()
            assert share.refresh() == 2
    finally:
        torch.set_num_threads(before)


def test_a_fixed_thread_count_holds_no_slot():
    with share_cores(3) as share:
        assert share is None


def test_the_slot_folder_is_shared_by_every_user_of_the_machine(tmp_path):
    with ThreadShare(tmp_path / "slots", cores=2):
        assert (tmp_path / "slots").stat().st_mode & 0o7777 == 0o1777
