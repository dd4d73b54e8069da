"""benchmarks/search.py's arms, accounting and arguments, without running a study: each arm's space passes the
worker's own checks, and the epochs saved are counted from a real Optuna study's reports."""
from __future__ import annotations

import optuna
import pytest
import yaml

from benchmarks.search import ARMS, Outcome, arm_space, epochs, main, parser, report
from pipeline.search.space import load_space
from tests.project_repo import REPO_ROOT


@pytest.mark.parametrize("arm", list(ARMS))
def test_each_arm_is_the_msrc_space_with_its_sampler_and_pruner(tmp_path, arm):
    space = yaml.safe_load((REPO_ROOT / "sweeps" / "msrc.yaml").read_text())
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(arm_space(space, arm, 3), sort_keys=False))
    checked = load_space(path, REPO_ROOT / "params.yaml", ["data.dataset=voc_layout", "data.root=/data"])
    assert checked.params.keys() == space["params"].keys() and checked.sampler.seed == 3
    assert checked.pruner.type == ("median" if arm == "tpe+median" else "none")


def test_epochs_trained_and_asked_count_what_pruning_saved():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for asked, reported, pruned in [(4, 4, False), (6, 2, True), (3, 3, False)]:
        study.enqueue_trial({"train.epochs": asked})
        trial = study.ask()
        assert trial.suggest_int("train.epochs", 1, 8) == asked
        for epoch in range(1, reported + 1):
            trial.report(0.1 * epoch, epoch)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else None,
                   values=None if pruned else 0.5)
    assert epochs(study) == (9, 13)


def test_report_gives_the_time_ratio_and_arguments_have_defaults(tmp_path):
    table = report({"tpe+median": [Outcome(0.2, 60, 90, 10, 20)], "random": [Outcome(0.18, 100, 120, 20, 20)]})
    assert "| tpe+median | 0.200 | 60 s | 90 s | 10 / 20 |" in table
    assert table.endswith("wall-clock 0.60, CPU time 0.75")
    args = parser().parse_args([])
    assert (args.trials, args.seeds, args.fixed) == (16, 1, [])
    with pytest.raises(SystemExit, match="no such folder"):
        main(["--root", str(tmp_path / "missing")])
