"""The MLflow screenshots in docs/img, taken from a real study as a user sees it after `make run`.

    make run                                   # or any run_hyper.py study with the default tracking
    .venv/bin/python bench/screenshots.py .    # the folder holding its mlflow.db and mlruns/

Serves MLflow on loopback over that folder's tracking store, opens the link the CLI printed (the study's
shared view) in headless Chromium and keeps two screenshots: the runs table, whose parent row shows the
best valid MRR@10 without a click (docs/img/mlflow_study_view.png), and the chart view on the best-so-far
curve (docs/img/mlflow_study_chart.png). The views are reached as tests/test_ui.py reaches them
(tests/browser.py), so a screenshot here is what that test checks, on ml-100k instead of the toy data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import browser, free_port, mlflow_server, serve, show_study_chart, show_study_table  # noqa: E402


def close_assistant(page: object) -> None:
    """MLflow 3's assistant panel takes a third of the page on first visit; the table is what we show."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")  # type: ignore[attr-defined]
    if close.count():
        close.first.click()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where the study ran: its mlflow.db and mlruns/")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    folder = args.folder.resolve()
    if not (folder / "mlflow.db").is_file():
        print(f"{folder / 'mlflow.db'}: no such file (run the study there first: make run)", file=sys.stderr)
        return 2
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(mlflow_server(folder / "mlflow.db", folder / "mlruns", port), f"{base}/health",
               folder / "mlflow-screenshots.log"), sync_playwright() as playwright:
        client = MlflowClient(base)
        parents = [run for experiment in client.search_experiments()
                   for run in client.search_runs([experiment.experiment_id], "tags.study_name != ''")
                   if "mlflow.parentRunId" not in run.data.tags and "best_valid_mrr_at_10" in run.data.metrics]
        if not parents:
            print(f"{folder / 'mlflow.db'}: no study with a finished trial", file=sys.stderr)
            return 2
        parent = max(parents, key=lambda run: run.info.start_time)  # the newest study
        chromium = browser(playwright)
        page = chromium.new_page(viewport={"width": 1600, "height": 900})
        show_study_table(page, base, parent.info.experiment_id, parent.info.run_name,
                         parent.data.metrics["best_valid_mrr_at_10"])
        close_assistant(page)
        args.out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out / "mlflow_study_view.png"))
        show_study_chart(page, base, parent.info.experiment_id)
        close_assistant(page)
        page.locator(".js-plotly-plot").first.hover()  # the card's full-screen button shows on hover
        page.locator("[data-component-id='fullscreen_button_chartcard']").first.click()
        page.get_by_role("dialog").locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # the dialog's open animation
        page.screenshot(path=str(args.out / "mlflow_study_chart.png"))
        chromium.close()
    print(f"study {parent.info.run_name!r} (best valid MRR@10 {parent.data.metrics['best_valid_mrr_at_10']:.4f}): "
          f"{args.out / 'mlflow_study_view.png'}, {args.out / 'mlflow_study_chart.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
