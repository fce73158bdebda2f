"""Ctrl-C that is never lost. Python raises KeyboardInterrupt wherever the main thread happens to be;
when that is a finalizer or a weakref callback run by the garbage collector (SQLAlchemy registers
some), the exception is swallowed and printed as "Exception ignored in ... Traceback", and the process
goes on as if no key was pressed. The hook below delivers such an interrupt again, in the main thread
once the collector is done, and prints nothing. SQLAlchemy catches one that lands in a connection's
reset itself, logs it with its traceback ("Exception during reset or similar") and raises it on: that
log record is dropped too, since the interrupt is ours to report (one line, no traceback)."""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
from typing import Any

_default_hook = sys.unraisablehook
_handler_before: Any = signal.SIG_IGN  # SIGINT's handler when the swallowed interrupt arrived


def _raise_interrupt(signum: int, frame: Any) -> None:
    if frame is not None and frame.f_code is _redeliver.__code__:
        _deliver_soon()  # still inside the hook, whose exceptions are swallowed too
        return
    signal.signal(signal.SIGINT, _handler_before)  # one delivery; later presses do what they did before
    raise KeyboardInterrupt


def _deliver_soon() -> None:
    # From another thread: a signal tripped here would run its handler inside this hook at once.
    timer = threading.Timer(0.01, _thread.interrupt_main, args=(signal.SIGINT,))
    timer.daemon = True
    timer.start()


def _redeliver(unraisable: Any) -> None:
    global _handler_before
    in_main = threading.current_thread() is threading.main_thread()
    if not (in_main and isinstance(unraisable.exc_value, KeyboardInterrupt)):
        _default_hook(unraisable)
        return
    if signal.getsignal(signal.SIGINT) is not _raise_interrupt:
        _handler_before = signal.getsignal(signal.SIGINT) or signal.SIG_DFL
        signal.signal(signal.SIGINT, _raise_interrupt)  # also where SIGINT is ignored: SIGTERM interrupts too
    _deliver_soon()


class _WithoutInterrupts(logging.Handler):
    """SQLAlchemy's records, less those that carry an interrupt, passed on to where they went before:
    the root logger's handlers, else logging's last resort (stderr, warnings and above)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            return
        logging.getLogger().handle(record)


def redeliver_swallowed_interrupts() -> None:
    """Install the hooks (idempotent): an interrupt swallowed by a finalizer is raised again, and
    SQLAlchemy's log of one it raises on is dropped."""
    sys.unraisablehook = _redeliver
    sqlalchemy = logging.getLogger("sqlalchemy")
    if not any(isinstance(h, _WithoutInterrupts) for h in sqlalchemy.handlers):
        sqlalchemy.addHandler(_WithoutInterrupts())
        sqlalchemy.propagate = False  # the handler passes on what it keeps


STUCK_SECONDS = 90.0  # an interrupted study writes its results in seconds; this long means a lock is stuck


def report_if_stuck() -> None:
    """After an interrupt: should the clean-up still run ``STUCK_SECONDS`` later, print every thread's
    stack to stderr (a hang there has been seen once under load and never reproduced; this names it)."""
    import faulthandler

    faulthandler.dump_traceback_later(STUCK_SECONDS, exit=False, file=sys.stderr)
