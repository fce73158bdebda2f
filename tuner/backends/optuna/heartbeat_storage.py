"""Optuna's RDBStorage with a heartbeat that outlives a failed beat (imported with Optuna, by
``storage.make_storage``).

Optuna's heartbeat thread stops at the first exception of a beat and prints its traceback: a
server's dropped connection, or a database error while an interrupted worker's clean-up writes (seen
twice in about ten Ctrl-C test runs with two workers on sqlite, cause not captured). The trial then
runs on without heartbeats, and after the grace period every other host takes it for dead and
retries it while it still runs. Here a failed beat is one line on stderr naming its cause, and the
next interval beats again.
"""

from __future__ import annotations

import sys

from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from sqlalchemy.exc import SQLAlchemyError


class SteadyHeartbeatStorage(RDBStorage):
    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (SQLAlchemyError, StorageInternalError) as exc:
            cause: BaseException = exc
            while cause.__cause__ is not None:  # Optuna wraps SQLAlchemy's error, which wraps the driver's
                cause = cause.__cause__
            reason = (str(cause).splitlines() or [""])[0][:200]
            print(f"warning: a heartbeat of trial id {trial_id} was not recorded ({type(cause).__name__}: "
                  f"{reason}); the next follows in {self.heartbeat_interval} s", file=sys.stderr, flush=True)
