"""Passwords kept out of what seqtune shows and stores: a ``--storage postgresql://user:secret@host/db``
(or an MLflow URI with credentials) is printed, written to report.html and tagged on the MLflow run as
``postgresql://user:***@host/db``. The processes themselves use the URL as given."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):(?P<password>[^@\s'\"]+)@")


def redact_credentials(text: str) -> str:
    """``text`` with every URL's password replaced by ``***`` (user, host and path kept)."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
