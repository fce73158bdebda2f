# Two commands set up a fresh machine: `make run` (the main job) and `make test` (the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: setup run train test lint bench-speed mlflow-ui dashboard

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0          # the local CPU wheel, before anything pulls CUDA torch
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The main job: a tuning study on ml-100k, logged to MLflow (sqlite:///mlflow.db).
run: setup
	$(PY) run_hyper.py --model GRU4Rec --params_file search_spaces/quick.test --epochs=3 --workers 2 --output_file results/quick.result

# One model, RecBole defaults.
train: setup
	$(PY) -m models.train --model GRU4Rec --dataset ml-100k

test: setup lint
	$(PY) -m pytest -q

# ruff, and mypy on the library and the tuner: in the test command, so a type error fails CI.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy models tuner

bench-speed: setup
	$(PY) bench/speed.py

# Browse results: the MLflow UI and optuna-dashboard, on loopback only.
mlflow-ui: setup
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

dashboard: setup
	$(VENV)/bin/optuna-dashboard sqlite:///seqtune_studies.db --host 127.0.0.1 --port 8080
