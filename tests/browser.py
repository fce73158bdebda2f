"""Servers on loopback and headless Chromium (Playwright), shared by the UI tests and bench/screenshots.py:
the MLflow views a study opens with are reached one way, so the docs' screenshots show what the tests check."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def ensure_chromium() -> None:
    """Debian's chromium is the browser (Playwright never downloads one); install it when missing."""
    if not Path(CHROMIUM).exists():
        subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], check=False,
                       capture_output=True, timeout=600)
    if not Path(CHROMIUM).exists():
        subprocess.run(["apt-get", "update"], check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], check=True,
                       capture_output=True, timeout=600)


def browser(playwright: Any) -> Any:
    ensure_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(command: list[str], url: str, log: Path, timeout: float = 90) -> Iterator[None]:
    """``command`` running until the block ends, entered once ``url`` answers."""
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"{command[0]} did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def mlflow_server(backend_db: Path, artifacts: Path, port: int) -> list[str]:
    """The command of an MLflow server on loopback over a study's sqlite tracking store."""
    launcher = ["mlflow"] if shutil.which("mlflow") else [sys.executable, "-m", "mlflow"]
    return [*launcher, "server", "--backend-store-uri", f"sqlite:///{backend_db}", "--artifacts-destination",
            str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def study_view(base: str, experiment_id: str) -> str:
    """The link the CLI prints at the end of a study: the runs table with the study's columns."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey=seqtune"


def show_study_table(page: Any, base: str, experiment_id: str, parent_name: str, best_valid: float) -> None:
    """Open the study's view and wait until the parent's row shows ``best_valid`` (no click) under the
    best_valid_mrr_at_10 column; AssertionError (Playwright's timeout) when it does not."""
    page.goto(study_view(base, experiment_id))
    name_row = page.locator(".ag-row", has=page.get_by_text(parent_name, exact=True)).first
    name_row.wait_for(timeout=60_000)  # ag-grid pins the name column: the row's other cells share its index
    index = name_row.get_attribute("row-index")
    page.locator(f".ag-center-cols-container .ag-row[row-index='{index}']").get_by_text(
        f"{best_valid:.4g}", exact=True).wait_for(timeout=30_000)
    page.get_by_text("best_valid_mrr_at_10").first.wait_for(timeout=30_000)  # the column's header


def show_study_chart(page: Any, base: str, experiment_id: str) -> None:
    """Open the study's chart view on the best-so-far curve and wait until it is drawn."""
    page.goto(study_view(base, experiment_id).replace("/runs?", "/runs?compareRunsMode=CHART&"))
    page.get_by_placeholder("Search metric charts").fill("best_so_far")
    page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=60_000)
