"""Progress of a running study: a snapshot of its trials' states, shown as one line that updates in
place on a terminal (tqdm) or as a plain line per change otherwise, fed by a poller of the storage."""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyProgress:
    total: int  # the trials the study will run
    done: int  # finished trials that count towards it (complete, pruned, failed and not retried)
    pruned: int
    failed: int
    running: int
    best: float | None  # best validation score so far


ProgressCallback = Callable[[StudyProgress], None]


class ProgressDisplay:
    """tqdm on a terminal, a line per change otherwise, nothing with ``quiet``."""

    def __init__(self, metric: str, quiet: bool = False, stream: object = None,
                 planned_seconds_per_trial: float | None = None) -> None:
        self.metric = metric
        self.planned = planned_seconds_per_trial  # the plan's estimate, until this run finishes a trial
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._bar = None
        self._last: tuple[int, int, int, int] | None = None
        self._done_before: int | None = None  # trials a resumed study had finished before this run

    def __call__(self, snap: StudyProgress) -> None:
        if self.quiet:
            return
        best = "" if snap.best is None else f", best {self.metric} {snap.best:.4f}"
        states = f"{snap.running} running, {snap.pruned} pruned, {snap.failed} failed"
        if getattr(self.stream, "isatty", lambda: False)():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=snap.total, unit="trial", dynamic_ncols=True, desc="trials", file=self.stream)
            self._bar.total = snap.total
            self._bar.n = min(snap.done, snap.total)
            self._bar.set_postfix_str(states + best, refresh=False)
            self._bar.refresh()
            return
        key = (snap.done, snap.running, snap.pruned, snap.failed)
        if key == self._last:
            return
        self._last = key
        if self._done_before is None:
            self._done_before = snap.done
        elapsed, done_here = time.monotonic() - self.start, snap.done - self._done_before
        if done_here > 0:
            eta = f"eta {elapsed / done_here * (snap.total - snap.done):.0f}s"
        elif self.planned is not None:
            eta = f"eta ~{max(0.0, self.planned * (snap.total - snap.done) - elapsed):.0f}s (plan)"
        else:
            eta = "eta -"
        print(f"[{snap.done}/{snap.total} trials, {states}{best}, {eta}]", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
            self._thread.join()
            with contextlib.suppress(Exception):  # the storage may be gone on the way out
                self.progress(self.snapshot())

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # a busy sqlite file: the next poll shows it
                self.progress(self.snapshot())


def best_of(values: list[float], bigger: bool) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (max(finite) if bigger else min(finite)) if finite else None
