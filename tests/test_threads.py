"""train.num_threads: auto is fixed by the machine and the launch, not by the trainings running beside it, and the
stages make OpenMP wait passively so that trainings running at once share the cores."""
import os
import subprocess
import sys

import pytest
import torch

from pipeline.training.threads import resolve_threads, usable_cores, use_threads
from tests.conftest import REPO_ROOT


def test_auto_is_every_core_this_process_may_use(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_threads("auto") == usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("processes", "cores", "threads"), [("2", 2, 1), ("3", 2, 1), ("4", 16, 4), ("3", 16, 5)])
def test_under_torchrun_auto_is_an_equal_share_of_the_cores_among_the_local_processes(monkeypatch, processes, cores,
                                                                                      threads):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    monkeypatch.setattr("pipeline.training.threads.usable_cores", lambda: cores)
    assert resolve_threads("auto") == threads


def test_a_number_is_kept_and_zero_is_torchs_default():
    assert resolve_threads(3) == 3
    assert resolve_threads(0) == torch.get_num_threads()


def test_use_threads_sets_torch_for_the_run():
    before = torch.get_num_threads()
    try:
        assert use_threads(2) == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def wait_policy_seen_by_a_stage(env: dict) -> str:
    """OMP_WAIT_POLICY as a stage process sees it once its package is imported, before torch loads."""
    code = "import stages, os, sys; assert 'torch' not in sys.modules; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_stages_make_openmp_wait_passively_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert wait_policy_seen_by_a_stage(env) == "PASSIVE"
    assert wait_policy_seen_by_a_stage({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
