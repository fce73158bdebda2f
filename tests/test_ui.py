"""The MLflow UI and optuna-dashboard, served on loopback and checked in headless Chromium (Playwright)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import browser, free_port, mlflow_server, serve, show_study_chart, show_study_table
from tests.conftest import run_hyper, with_toy_data
from tuner.tracking.mlflow_tracker import check_server

SCREENSHOTS = Path(__file__).resolve().parents[1] / "tests" / "screenshots"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One study for every view here (each view only reads it), with its own data and tensor cache."""
    workdir = with_toy_data(tmp_path_factory.mktemp("ui"))
    (workdir / "h.test").write_text("learning_rate choice [0.01, 0.001]\nhidden_size choice [8, 16]\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQTUNE_CACHE", str(workdir / "cache"))
        proc = run_hyper(workdir, "--params_file", "h.test", "--epochs=3", "--study-name", "ui",
                         f"--storage=sqlite:///{workdir / 's.db'}", f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}")
    assert proc.returncode == 0, proc.stderr
    yield workdir


def test_mlflow_ui_lists_parent_and_children_and_draws_metric_chart(study: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = mlflow_server(study / "mlflow.db", study / "artifacts", port)
    SCREENSHOTS.mkdir(exist_ok=True)
    with serve(command, f"{base}/health", study / "mlflow.log"), sync_playwright() as playwright:
        check_server(base + "/")  # a real server passes run_hyper's check (one that does not: test_tracking)
        check_server(f"http://someone:pw@127.0.0.1:{port}")  # credentials are not part of the probe's host
        client = MlflowClient(base)
        experiment = client.get_experiment_by_name("GRU4Rec-toy")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        child = next(r for r in runs if r.data.tags.get("trial_number") == "0")
        chromium = browser(playwright)
        page = chromium.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs")
        page.get_by_text(parent.info.run_name).first.wait_for(timeout=60_000)
        page.locator("[data-component-id*='runnamecellrenderer']").first.click()  # expand the parent's children
        for number in range(3):
            page.get_by_text(f"trial-{number}", exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "mlflow_runs.png"))

        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("valid_mrr_at_10")  # the per-epoch curve
        title = page.get_by_text("valid_mrr_at_10", exact=True).first
        title.wait_for(timeout=60_000)
        card = title.locator("xpath=ancestor::div[.//div[contains(@class, 'js-plotly-plot')]][1]")
        line = card.locator(".js-plotly-plot .scatterlayer .trace").first  # the per-epoch line, not a bar
        line.wait_for(timeout=60_000)
        box = card.locator(".js-plotly-plot").first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100
        page.screenshot(path=str(SCREENSHOTS / "mlflow_trial_metrics.png"))

        # the link the CLI prints opens the table with the study's columns: the parent row's best valid
        # MRR@10 shows without a click
        show_study_table(page, base, experiment.experiment_id, parent.info.run_name,
                         parent.data.metrics["best_valid_mrr_at_10"])
        page.screenshot(path=str(SCREENSHOTS / "mlflow_study_view.png"))
        show_study_chart(page, base, experiment.experiment_id)  # the chart view: the anytime curve
        page.screenshot(path=str(SCREENSHOTS / "mlflow_study_chart.png"))
        chromium.close()


def test_optuna_dashboard_shows_the_study(study: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{study / 's.db'}",
               "--host", "127.0.0.1", "--port", str(port)]
    SCREENSHOTS.mkdir(exist_ok=True)
    with serve(command, f"{base}/api/studies", study / "dashboard.log"), sync_playwright() as playwright:
        chromium = browser(playwright)
        page = chromium.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/dashboard")
        page.get_by_text("1. ui").first.wait_for(timeout=60_000)  # the study list
        page.goto(f"{base}/dashboard/studies/1")
        page.get_by_text("ui (id=1)").first.wait_for(timeout=60_000)
        page.get_by_text("Best Trial").first.wait_for(timeout=60_000)
        history = page.locator(".js-plotly-plot").first
        history.wait_for(timeout=60_000)
        box = history.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100
        page.screenshot(path=str(SCREENSHOTS / "optuna_dashboard.png"))
        chromium.close()


def test_report_opens_from_disk_with_every_section_drawn(study: Path) -> None:
    """report.html from file://, with every request that is not the file itself refused (no network):
    every section, every image decoded, nothing asked of a server."""
    from playwright.sync_api import sync_playwright

    from tuner.reporting.report import SECTIONS

    SCREENSHOTS.mkdir(exist_ok=True)
    fetched: list[str] = []
    with sync_playwright() as playwright:
        chromium = browser(playwright)
        page = chromium.new_page(viewport={"width": 1300, "height": 1000})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                   else (fetched.append(route.request.url), route.abort()))
        page.goto((study / "report.html").as_uri())
        assert page.locator("h2").all_inner_texts() == list(SECTIONS)
        images = page.locator("img")
        assert images.count() == 4  # anytime curve, learning curves, parallel coordinates, importances
        for i in range(images.count()):
            assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100")
        assert page.locator("tr.best").count() == 1
        page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
        chromium.close()
    assert fetched == []
