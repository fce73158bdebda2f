"""An interrupt that lands in a finalizer (seen in the suite: SQLAlchemy's weakref callback during a
worker's Ctrl-C, printed as a traceback and then ignored) is raised again in the main thread."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import time
{install}
class Finalized:
    def __del__(self):
        raise KeyboardInterrupt  # as a Ctrl-C arriving while the collector runs a callback
try:
    Finalized()  # collected at once: the interrupt is raised inside its finalizer
    deadline = time.time() + 2  # the work that goes on (a trial's epochs)
    while time.time() < deadline:
        pass
    print("lost")
except KeyboardInterrupt:
    print("delivered")
"""


@pytest.mark.parametrize(("install", "expected"), [
    ("from tuner.interrupts import redeliver_swallowed_interrupts; redeliver_swallowed_interrupts()", "delivered"),
    ("", "lost"),  # what Python does by itself: the interrupt is printed as ignored and the code goes on
])
def test_an_interrupt_swallowed_by_a_finalizer_is_delivered_again(install: str, expected: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(install=install)], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == expected, (done.stdout, done.stderr)
    assert ("Traceback" in done.stderr) == (expected == "lost")


@pytest.mark.parametrize("send", ["kill from another thread", "interrupt_main"])
def test_a_claim_holds_ctrl_c_until_it_ends_whichever_thread_receives_it(send: str) -> None:
    """A process-directed signal may land on any thread, and a re-delivered interrupt never passes a
    signal mask: the claim's two writes must still not be split (seen in the suite: a RUNNING trial with
    no owner after Ctrl-C)."""
    import _thread
    import os
    import signal
    import threading
    import time

    from tuner.backends.optuna.worker import signals_deferred

    def interrupt() -> None:
        if send == "interrupt_main":
            _thread.interrupt_main(signal.SIGINT)
        else:
            os.kill(os.getpid(), signal.SIGINT)

    steps = []
    go = threading.Event()
    sender = threading.Thread(target=lambda: (go.wait(), interrupt()))  # started outside: no mask inherited
    sender.start()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                go.set()
                sender.join()
                time.sleep(0.05)  # the handler has had every chance to run here
                steps.append("both writes done")
            time.sleep(1)  # delivered on the way out of the block, before this ends
            steps.append("after")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert steps == ["both writes done"]


def test_ctrl_c_while_optuna_writes_a_trial_s_end_stops_the_worker_with_the_trial_complete() -> None:
    """A Ctrl-C during Optuna's tell, delivered as the tell returned, left ``_run_trial``'s clean-up on a
    state it never assigned: an UnboundLocalError replaced the interrupt and the worker died with a
    traceback (the CI failure of the optuna-2 Ctrl-C test). Now it is delivered once the trial's end is
    written and ``_run_trial`` has returned: a KeyboardInterrupt, the trial COMPLETE, no next trial."""
    import signal

    import optuna

    from tuner.backends.optuna.worker import HELD_AFTER_TELL, defer_signals_in_tell, deliver_held_signals

    defer_signals_in_tell()
    study = optuna.create_study(direction="maximize")
    write_state = study._storage.set_trial_state_values

    def interrupted_write(*args: object, **kwargs: object) -> bool:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the tell's writes
        return write_state(*args, **kwargs)

    study._storage.set_trial_state_values = interrupted_write
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            study.optimize(lambda trial: 1.0, n_trials=3, callbacks=[deliver_held_signals])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert raised.value.__context__ is None  # not raised while handling another error
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] and HELD_AFTER_TELL == []


def test_a_clean_up_that_hangs_prints_every_threads_stack() -> None:
    script = ("import time\nfrom tuner import interrupts\ninterrupts.STUCK_SECONDS = 0.5\n"
              "interrupts.report_if_stuck()\ndef stuck_in_clean_up():\n    time.sleep(3)\nstuck_in_clean_up()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "stuck_in_clean_up" in done.stderr, done.stderr


def test_a_progress_poll_stuck_on_the_storage_does_not_hold_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """After Ctrl-C the driver leaves the poller's block; a poll blocked on a locked storage must not
    keep it there (a candidate for the one unexplained hang after Ctrl-C)."""
    import threading
    import time

    from tuner.reporting import progress

    monkeypatch.setattr(progress, "JOIN_SECONDS", 0.5)
    never = threading.Event()
    main = threading.current_thread()
    polls: list[str] = []

    def snapshot() -> object:
        if threading.current_thread() is not main:
            never.wait()  # the poller's read: stuck
        return "final"

    tic = time.monotonic()
    with progress.ProgressPoller(snapshot, polls.append):  # type: ignore[arg-type]
        time.sleep(1.2)  # the poller is in its first read by now
    assert time.monotonic() - tic < 5 and polls == ["final"]


SQLALCHEMY_SCRIPT = """
import logging
import sqlalchemy
from sqlalchemy import event
{install}
engine = sqlalchemy.create_engine("sqlite://")
pool_errors = {{"broken": False}}

@event.listens_for(engine, "reset")
def reset(dbapi_connection, record, state):  # as a Ctrl-C arriving while a connection goes back to the pool
    if pool_errors["broken"]:
        raise RuntimeError("a real pool error")
    raise KeyboardInterrupt

try:
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))
    print("lost")
except KeyboardInterrupt:
    print("delivered")
pool_errors["broken"] = True
try:
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))
except RuntimeError:
    pass
"""


@pytest.mark.parametrize("install", [
    "from tuner.interrupts import redeliver_swallowed_interrupts; redeliver_swallowed_interrupts()", ""])
def test_sqlalchemy_s_log_of_an_interrupt_it_raises_on_is_dropped_and_its_other_errors_kept(install: str) -> None:
    """A worker's Ctrl-C landed in a pooled connection's reset (CI): SQLAlchemy logged the interrupt with
    its traceback ("Exception during reset or similar") before raising it on, under the one-line
    "interrupted: resume with the same command"."""
    done = subprocess.run([sys.executable, "-c", SQLALCHEMY_SCRIPT.format(install=install)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "delivered", done.stderr
    interrupt_logged = "KeyboardInterrupt" in done.stderr
    assert interrupt_logged == (not install), done.stderr
    assert "RuntimeError: a real pool error" in done.stderr  # a real error still reads as before
