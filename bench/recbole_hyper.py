"""RecBole 1.2.1's run_hyper.py, step by step, with a timestamp per finished trial (JSON).

Run with the RecBole venv's python (see bench/setup_recbole.sh); RecBole's run_hyper.py is not in its
wheel, so this is that script's logic through RecBole's public API (HyperTuning + objective_function):

    PYTHONPATH=$HOME/raystub TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 HYPEROPT_FMIN_SEED=2020 \
        $HOME/recbole-venv/bin/python bench/recbole_hyper.py --config cfg.yaml --params h.test --out r.json
"""

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="fixed config YAML (model, dataset, epochs, ...)")
    parser.add_argument("--params", required=True, help="hyper.test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-file", default="/tmp/recbole_hyper.result")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv
    start = time.time()
    import torch
    from recbole.quick_start import objective_function
    from recbole.trainer import HyperTuning

    torch.set_num_threads(args.threads)
    trials = []

    def timed(config_dict=None, config_file_list=None):
        tic = time.time()
        result = objective_function(config_dict, config_file_list)
        trials.append({"params": dict(config_dict), "finished_s": time.time() - start, "seconds": time.time() - tic,
                       "best_valid_score": float(result["best_valid_score"]),
                       "test_result": {k: float(v) for k, v in result["test_result"].items()}})
        return result

    hp = HyperTuning(timed, algo="exhaustive", early_stop=10, max_evals=100, params_file=args.params,
                     fixed_config_file_list=[args.config])
    hp.run()
    hp.export_result(output_file=args.output_file)
    total = time.time() - start
    best = max(trials, key=lambda t: t["best_valid_score"])  # first of the best, as HyperTuning keeps it
    for trial in trials:
        if trial["best_valid_score"] == best["best_valid_score"]:
            best = trial
            break
    with open(args.out, "w") as handle:
        json.dump({"tool": "recbole", "total_s": total, "trials": trials, "best": best,
                   "time_to_best_s": best["finished_s"]}, handle, indent=1)
    print(f"recbole run_hyper: {len(trials)} trials in {total:.0f}s; best {best['params']} "
          f"valid {best['best_valid_score']:.4f} at {best['finished_s']:.0f}s")


if __name__ == "__main__":
    main()
