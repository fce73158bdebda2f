"""``python -m models.train --model GRU4Rec --dataset ml-100k [--config_files a.yaml] [--key=value ...]``

Trains one configuration and prints the best validation and the test metrics, as RecBole's
``run_recbole`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from models.cli import command_parser, parse_with_overrides, run_cli, split_files
from models.utils import atomic_path, check_writable


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m models.train", "Train one sequential recommender under RecBole's protocol.")
    parser.add_argument("--model", "-m", default="GRU4Rec", help="model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (or use --data_path=DIR)")
    parser.add_argument("--config_files", nargs="*", default=[], help="YAML files, space separated")
    parser.add_argument("--checkpoint", default=None, help="write the best weights here (.pth)")
    parser.add_argument("--result_json", default=None, help="write the full result (history included) as JSON")
    parser.add_argument("--resume_dir", default=None,
                        help="keep the fit's state here (after an epoch, every 30 s at most); the same command "
                             "after a stop (Ctrl-C, a killed job) continues from the state, exactly")
    parser.add_argument("--quiet", action="store_true", help="print only the final result lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from models.config import build_config

    args, overrides = parse_with_overrides(build_parser(), argv)
    config = build_config(args.model, args.dataset, split_files(args.config_files), overrides, "command line")
    for flag, path, folder in (("--checkpoint", args.checkpoint, False), ("--result_json", args.result_json, False),
                               ("--resume_dir", args.resume_dir, True)):
        if path:  # before training, not after it
            check_writable(Path(path), flag, folder)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    from models.data.sequential import load_sequential_data
    from models.metrics import format_result
    from models.trainer import EpochReport, train

    data = load_sequential_data(config)
    if not args.quiet:
        summary = data.summary()
        print(f"{config.model} on {config.dataset}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))

    def on_epoch(report: EpochReport) -> None:
        if args.quiet:
            return
        line = f"epoch {report.epoch:3d}  train loss {report.train_loss:.4f}  ({report.train_seconds:.1f}s)"
        line += "  (restored)" if report.restored else ""
        if report.valid_score is not None:
            line += f"  valid {config['valid_metric']} {report.valid_score:.4f}" + ("  *" if report.improved else "")
        print(line, flush=True)

    result = train(config, data, callback=on_epoch, checkpoint_path=args.checkpoint, resume_dir=args.resume_dir)
    print(f"best valid : {format_result(result.best_valid_result)}")
    print(f"test result: {format_result(result.test_result)}")
    if args.result_json:
        with atomic_path(Path(args.result_json)) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=1))
    return 0


def cli() -> None:
    """Console-script entry (``seqtune-train``)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
