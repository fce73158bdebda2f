"""Memory of a process tree, read from Linux's /proc (the benches that watch a study's processes)."""

from __future__ import annotations

from pathlib import Path


def process_tree(root: int) -> list[int]:
    """``root`` and every process under it (workers, a fork server and its forks, Ray's daemons)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # the parent pid is the 2nd field after the command name, which may hold spaces and ')'
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


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
