"""The search worker's command line (docs/how-to/search.md).

    python -m pipeline.search --study NAME --storage URL --space FILE --trials N [-S key=value ...]
    python -m pipeline.search --study NAME --storage URL --best
    python -m pipeline.search --study NAME --storage URL --register-best

Every worker of a study runs the same command, each in its own clone (DVC's lock allows one experiment per
workspace at a time); `--trials N` is the study's size: a worker stops once N trials of the study are complete or
pruned, so a restarted worker resumes the study and several workers share the N (each may start one more while
another's last trial runs).
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from pipeline.config import ConfigError
from pipeline.errors import UserError
from pipeline.logs import configure_logging
from pipeline.search import space, storage
from pipeline.search.worker import TrialFailed, Worker

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # the trials --trials counts
INTERRUPTED = 128 + signal.SIGINT  # as the stages exit on Ctrl-C (stages/lifecycle/signals.py)
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # part of each trial's experiment name, a git ref
log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m pipeline.search", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("--study", required=True, help="the study's name, shared by its workers")
    parse.add_argument("--storage", required=True, help="Optuna RDB storage URL: sqlite:///optuna.db, postgresql://...")
    parse.add_argument("--space", type=Path, help="the search space file, e.g. sweeps/example.yaml")
    parse.add_argument("--trials", type=int, help="the study's size: complete or pruned trials to reach")
    parse.add_argument("-S", "--set-param", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                       help="a value every trial uses, as `dvc exp run -S` takes it (++ adds a key)")
    parse.add_argument("--worker", type=int, default=0, help="this worker's number, added to the sampler's seed")
    parse.add_argument("--heartbeat", type=int, default=storage.HEARTBEAT_INTERVAL,
                       help=f"seconds between heartbeats; a trial silent {storage.STALE_AFTER} times as long is "
                            "failed and retried")
    parse.add_argument("--params", type=Path, default=Path("params.yaml"), help=argparse.SUPPRESS)
    parse.add_argument("--best", action="store_true", help="print the study's best trial and stop")
    parse.add_argument("--register-best", action="store_true",
                       help="register the best trial's model now (a worker does it when the study is done)")
    return parse


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_logging()
    try:
        sys.exit(dispatch(args))
    except ConfigError as error:
        sys.exit("\n".join(f"error: {line}" for line in str(error).splitlines()))
    except UserError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt as stop:
        print(f"stopped: {stop}" if str(stop) else "stopped by Ctrl-C", file=sys.stderr)
        sys.exit(INTERRUPTED)


def dispatch(args: argparse.Namespace) -> int:
    if not STUDY_NAME.fullmatch(args.study):
        raise UserError(f"--study {args.study!r}: letters, digits, '.', '_' and '-' only (it names experiments)")
    if args.best or args.register_best:
        return show_best(args)
    if args.space is None or args.trials is None or args.trials < 1:
        raise UserError("--space FILE and --trials N (>= 1) are needed to run trials (or --best, --register-best)")
    return search(args)


def show_best(args: argparse.Namespace) -> int:
    study = storage.load_study(storage.open_storage(args.storage, heartbeat=None), args.study)
    from pipeline.search import best  # MLflow and torch take seconds to import: once the storage answered

    if args.register_best:
        best.register_best(study, space.params_with(args.params, args.fixed))
    print(best.summary(study))
    return 0


def search(args: argparse.Namespace) -> int:
    """Check everything, then run trials until the study has --trials finished ones or Ctrl-C."""
    search_space = space.load_space(args.space, args.params, args.fixed)  # before the storage: nothing is created
    params = space.params_with(args.params, args.fixed)
    study = optuna.create_study(
        storage=storage.open_storage(args.storage, args.heartbeat), study_name=args.study, load_if_exists=True,
        direction=search_space.file.direction, pruner=search_space.pruner.build(),
        sampler=search_space.sampler.build(**seed(search_space, args.worker)))
    check_direction(study, search_space)
    study.set_user_attr("metric", search_space.file.metric)  # for --best, which reads no space file
    from pipeline.search import best  # MLflow and torch take seconds to import: once the storage answered
    from pipeline.tracking.store import setup_experiment

    setup_experiment(params.mlflow)  # once, before any trial: concurrent first uses race (mlflow#10334)
    remaining = args.trials - finished(study)
    worker = Worker(args.study, args.storage, search_space, args.fixed, Path.cwd())
    if remaining > 0:
        log.info(f"study {args.study}: {finished(study)} of {args.trials} trials done; running up to {remaining}")
        with worker.stop.listening():
            study.optimize(worker.objective, n_trials=remaining, catch=(TrialFailed,), callbacks=[
                optuna.study.MaxTrialsCallback(args.trials, states=COUNTED),
                lambda study, trial: study.stop() if worker.stop.asked else None])
    if worker.stop.asked:
        log.info(f"stopped at a trial boundary; the same command resumes study {args.study}")
        print(best.summary(study))
        return INTERRUPTED
    best.register_best(study, params)
    print(best.summary(study))
    return 0


def finished(study: optuna.Study) -> int:
    """Trials that count towards --trials: complete and pruned ones (failed ones are retried or replaced)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def seed(search_space: space.Space, worker: int) -> dict:
    """The sampler's seed for this worker: workers with one seed would propose the same trials."""
    return {} if search_space.sampler.seed is None else {"seed": search_space.sampler.seed + worker}


def check_direction(study: optuna.Study, search_space: space.Space) -> None:
    if study.direction.name.lower() != search_space.file.direction:
        raise UserError(f"{search_space.file.direction}: study {study.study_name} was created to "
                        f"{study.direction.name.lower()}; keep its direction or name a new study")
