"""User-facing errors: each is printed as one line (no traceback) and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SeqtuneError(Exception):
    """An error caused by the user's input (a file, a key, a name), not by a bug."""


class ConfigError(SeqtuneError):
    """An unknown or invalid configuration key or value."""


class DataError(SeqtuneError):
    """A missing, garbled or inconsistent data file."""


def closest(name: str, known: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest known name, or ''."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f" (did you mean {lowered[name.lower()]!r}?)"
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return f" (did you mean {match[0]!r}?)" if match else ""
