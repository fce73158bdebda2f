"""Small shared helpers: cross-process file locks, atomic writes, writable paths, seeding, device choice."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import SeqtuneError


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held across processes (concurrent trials share caches)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def to_plain(value: Any) -> Any:
    """Only primitive containers survive JSON, YAML and weights_only loading: everything else as text."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def init_seed(seed: int, reproducibility: bool = True) -> None:
    """Seed every generator the way RecBole's init_seed does."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = not reproducibility
    torch.backends.cudnn.deterministic = reproducibility


def resolve_device(name: str | None) -> str:
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def check_writable(path: Path, flag: str, folder: bool = False) -> None:
    """``path`` (a file, or with ``folder`` a folder) can be written, its folders created where missing:
    checked before anything trains, so a run does not train for hours and then fail at its results;
    nothing is left behind (a dry run too)."""
    if folder and path.exists() and not path.is_dir():
        raise SeqtuneError(f"{flag} {path}: is a file; expected a folder")
    if not folder and path.is_dir():
        raise SeqtuneError(f"{flag} {path}: is a folder; expected a file name")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise SeqtuneError(f"{flag} {path}: not writable")
    nearest = path.resolve() if folder else path.resolve().parent
    while not nearest.exists():  # the nearest existing folder must let us create the rest
        nearest = nearest.parent
    if not nearest.is_dir():
        raise SeqtuneError(f"{flag} {path}: {nearest} is a file, not a folder")
    try:  # a probe, removed at once: os.access says yes to root on /proc or a root-squashed share
        os.rmdir(tempfile.mkdtemp(dir=nearest, prefix=".seqtune-probe-"))
    except OSError as exc:
        raise SeqtuneError(f"{flag} {path}: cannot write in {nearest} ({exc.strerror})") from None
