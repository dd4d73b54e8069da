"""SIGTERM and Ctrl-C during the training loop are recorded and honoured at its stop points, real signals sent to this
process (tests/test_train.py and tests/test_dvc_signals.py send them to real trainings)."""
from __future__ import annotations

import signal

import pytest

from pipeline.training import graceful_stop
from pipeline.training.graceful_stop import GracefulStop


@pytest.fixture(autouse=True)
def python_signal_handlers():
    """Python's own handlers for SIGINT and SIGTERM during each test, whatever the suite inherited: a background job of
    a shell script starts with SIGINT ignored, and GracefulStop leaves an ignored signal ignored."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_deferring_stops_at_the_next_stop_point(signum):
    before = signal.getsignal(signum)
    stop = GracefulStop()
    with stop.listening():
        with pytest.raises(KeyboardInterrupt, match=rf"^stopped at a batch boundary of epoch 2 \({signum.name}\)$"):
            with stop.deferring():
                stop.stop_point("at a batch boundary of epoch 1")
                signal.raise_signal(signum)  # recorded: nothing is raised in the middle of what runs
                assert list(stop.until_asked(range(3))) == []  # validation ends its shard early
                stop.stop_point("at a batch boundary of epoch 2")
    assert signal.getsignal(signum) == before


def test_a_request_during_the_last_epochs_writes_stops_when_the_loop_ends():
    stop = GracefulStop()
    with stop.listening(), pytest.raises(KeyboardInterrupt, match=r"^stopped after the last epoch \(SIGTERM\)$"):
        with stop.deferring():
            signal.raise_signal(signal.SIGTERM)


def test_outside_the_loop_a_signal_interrupts_at_once_and_its_echo_is_ignored():
    stop = GracefulStop()
    with stop.listening():
        with pytest.raises(KeyboardInterrupt, match=r"^terminated by signal 15$"):
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # DVC's watch echoing it while the run is closed as KILLED


def test_a_user_insisting_interrupts_at_once(monkeypatch):
    stop = GracefulStop()
    with stop.listening(), pytest.raises(KeyboardInterrupt, match=r"^terminated by signal 2, a second time$"):
        with stop.deferring():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the same request delivered twice
            monkeypatch.setattr(graceful_stop, "SAME_REQUEST_SECONDS", 0.0)
            signal.raise_signal(signal.SIGINT)


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job of a shell script
    try:
        stop = GracefulStop()
        with stop.listening(), stop.deferring():
            signal.raise_signal(signal.SIGINT)
        assert stop.signal is None
    finally:
        signal.signal(signal.SIGINT, previous)
