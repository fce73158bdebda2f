"""RecBole-compatible entry point: ``python run_hyper.py --model KSR --params_file hyper.test``."""

from models.cli import run_cli
from tuner.cli import main

if __name__ == "__main__":
    run_cli(main)
