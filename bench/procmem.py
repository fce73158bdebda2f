"""Memory of a process tree, read from Linux's /proc (the benches that watch a study's processes)."""

from __future__ import annotations

from pathlib import Path

from tuner.proctree import process_tree  # noqa: F401 - the benches' one import of it


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """``VmRSS`` (resident set, from status) or ``Pss`` (proportional set: shared pages split between
    the processes sharing them, from smaps_rollup) of ``pid`` in MB; 0 for a process gone."""
    source = "smaps_rollup" if field == "Pss" else "status"
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
