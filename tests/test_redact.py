"""Passwords in URLs are hidden wherever seqtune shows or stores a URL."""

from __future__ import annotations

import pytest

from tuner.redact import redact_credentials


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://seqtune:s3cr:et@db.example:5432/studies", "postgresql://seqtune:***@db.example:5432/studies"),
    ("postgresql+psycopg2://u:p@127.0.0.1/x", "postgresql+psycopg2://u:***@127.0.0.1/x"),
    ("http://alice:pw@mlflow:5000", "http://alice:***@mlflow:5000"),
    ("run_hyper.py --storage 'postgresql://u:a%20b@h/db' --mlflow-uri http://u:q@h:5000",
     "run_hyper.py --storage 'postgresql://u:***@h/db' --mlflow-uri http://u:***@h:5000"),
    ("postgresql://u:p/w:x@h/db", "postgresql://u:***@h/db"),  # SQLAlchemy reads up to the '@' as the password
    ("postgresql://:only-a-password@h/db", "postgresql://:***@h/db"),
])
def test_passwords_are_hidden(text: str, shown: str) -> None:
    assert redact_credentials(text) == shown


@pytest.mark.parametrize("text", [
    "sqlite:////tmp/a:b/studies.db", "sqlite:///seqtune_studies.db", "postgresql://user@h/db",
    "http://127.0.0.1:5000/#/experiments/1", "the study in http://127.0.0.1:5000 (user a@b)",
])
def test_urls_without_a_password_are_unchanged(text: str) -> None:
    assert redact_credentials(text) == text
