"""Progress of a running study: a snapshot of its trials' states, shown as one line that updates in
place on a terminal (every second: the elapsed time and the ETA move) or as a plain line per change
otherwise (a log file gets no carriage returns), fed by a poller of the storage."""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class StudyProgress:
    total: int  # the trials the study will run
    done: int  # finished trials that count towards it (complete, pruned, failed and not retried)
    pruned: int
    failed: int
    running: int
    best: float | None  # best validation score so far


ProgressCallback = Callable[[StudyProgress], None]


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressDisplay:
    """The study's progress line: in place on a terminal, a plain line per change otherwise, nothing
    with ``quiet``. The ETA comes from the study plan's cost model until this run has finished a trial,
    then from this run's own pace; never "nan"."""

    def __init__(self, metric: str, quiet: bool = False, stream: TextIO | None = None,
                 planned_seconds_per_trial: float | None = None, clock: Callable[[], float] = time.monotonic,
                 time_limit: tuple[str, float] | None = None) -> None:
        self.metric = metric
        self.planned = planned_seconds_per_trial  # the plan's estimate, until this run finishes a trial
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.start = clock()
        # ("budget" or "timeout", seconds from now): a limit that may end the study before its last trial
        self.limit_name = time_limit[0] if time_limit else ""
        self.deadline: float | None = self.start + time_limit[1] if time_limit else None
        self._last: tuple[int, int, int, int, float | None, bool] | None = None
        self._done_before: int | None = None  # trials a resumed study had finished before this run
        self._drawn = False

    def line(self, snap: StudyProgress, width: int | None = None) -> str:
        """The full line, or within ``width`` the first that fits of: without the states' counts, then
        also without the words; the ETA and the limit are what a narrow terminal must still show."""
        if self._done_before is None:
            self._done_before = snap.done
        elapsed = self.clock() - self.start
        eta, limit = self.eta(snap, elapsed), self.limit(snap)
        best = "" if snap.best is None else f" | best {self.metric} {snap.best:.4f}"
        states = f": {snap.running} running, {snap.pruned} pruned, {snap.failed} failed"
        full = f"[{snap.done}/{snap.total} trials{states}{best} | {format_duration(elapsed)} elapsed, {eta}{limit}]"
        if width is None or len(full) <= width:
            return full
        medium = f"[{snap.done}/{snap.total} trials{best} | {format_duration(elapsed)} elapsed, {eta}{limit}]"
        best = "" if snap.best is None else f" | best {snap.best:.4f}"
        short = f"[{snap.done}/{snap.total}{best} | {format_duration(elapsed)}, {eta}{self.limit(snap, short=True)}]"
        return next((text for text in (medium, short) if len(text) <= width), short[:width])

    def eta(self, snap: StudyProgress, elapsed: float) -> str:
        left = max(0, snap.total - snap.done)
        done_here = snap.done - (self._done_before or 0)
        if left == 0:
            return "eta 0 s"
        if done_here > 0:
            return f"eta {format_duration(elapsed / done_here * left)}"
        if self.planned is not None:
            planned = self.planned * left
            if planned > elapsed:
                return f"eta ~{format_duration(planned - elapsed)} (plan)"
            return f"eta unknown (past the plan's {format_duration(planned)})"  # slower than measured
        return "eta unknown (no plan)"

    def limit(self, snap: StudyProgress, short: bool = False) -> str:
        """The budget's (or --timeout's) time left: the ETA is the whole study's, and a limit that ends
        first ends it there (nothing new starts; under a budget running trials stop too)."""
        if self.deadline is None or snap.done >= snap.total:
            return ""
        left = self.deadline - self.clock()
        if left > 0:
            return f" | {self.limit_name} {format_duration(left)}" + ("" if short else " left")
        if short:
            return f" | {self.limit_name} {'spent' if self.limit_name == 'budget' else 'reached'}"
        if self.limit_name == "budget":
            return " | budget spent: running trials stop at their next epoch"
        return f" | {self.limit_name} reached: no new trials start"

    def __call__(self, snap: StudyProgress) -> None:
        if self.quiet:
            return
        if self.terminal:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.stream.write("\r" + self.line(snap, width) + "\x1b[K")
            self.stream.flush()
            self._drawn = True
            return
        key = (snap.done, snap.running, snap.pruned, snap.failed, snap.best, self.spent())
        if key != self._last:
            self._last = key
            print(self.line(snap), file=self.stream, flush=True)

    def spent(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def close(self) -> None:
        if self._drawn:  # leave the last state on screen, and the cursor on a new line
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


JOIN_SECONDS = 10.0  # a poll is one storage read; the poller thread is a daemon, left behind if stuck


class ProgressPoller:
    """Calls ``progress(snapshot())`` once a second in a thread, and once more when stopped."""

    def __init__(self, snapshot: Callable[[], StudyProgress], progress: ProgressCallback | None) -> None:
        self.snapshot, self.progress = snapshot, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProgressPoller:
        if self.progress is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self._stop.set()
            self._thread.join(timeout=JOIN_SECONDS)  # a poll stuck on the storage must not hold the exit
            with contextlib.suppress(Exception):  # the storage may be gone on the way out
                self.progress(self.snapshot())

    def _run(self) -> None:
        progress = self.progress
        assert progress is not None  # the thread starts only with a callback
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # a busy sqlite file: the next poll shows it
                progress(self.snapshot())


def best_of(values: list[float], bigger: bool) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (max(finite) if bigger else min(finite)) if finite else None
