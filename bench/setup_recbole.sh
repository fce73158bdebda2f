#!/usr/bin/env bash
# Install RecBole 1.2.1 in its own virtualenv (never in the project's venv) plus the
# "ray" stub package that recbole.quick_start imports. Idempotent: re-running skips
# whatever already exists. See /work/shared/recbole-reference.md for why each step.
#
#   RECBOLE_VENV  venv path      (default: $HOME/recbole-venv)
#   RAYSTUB       ray stub path  (default: $HOME/raystub)
#
# Every RecBole process then needs:
#   PYTHONPATH=$RAYSTUB TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore::FutureWarning
set -euo pipefail

RECBOLE_VENV="${RECBOLE_VENV:-$HOME/recbole-venv}"
RAYSTUB="${RAYSTUB:-$HOME/raystub}"
PY="$RECBOLE_VENV/bin/python"

# 1. venv
if [ ! -x "$PY" ]; then
    echo "creating venv $RECBOLE_VENV"
    python3 -m venv "$RECBOLE_VENV"
fi

have() { "$PY" -m pip show "$1" >/dev/null 2>&1; }

# 2. torch first: pip's global config points at a local CPU wheel of exactly this version;
#    any other spec pulls a multi-GB CUDA build.
if ! have torch; then
    "$PY" -m pip install torch==2.13.0
fi

# 3. recbole without deps (its hard dep ray<=2.6.3 has no wheel for Python 3.11).
if ! have recbole; then
    "$PY" -m pip install recbole==1.2.1 --no-deps
fi

# 4. the light deps by hand (numpy<2: Config uses np.float_), plus hyperopt for run_hyper.
DEPS=("numpy<2" "pandas<3" scipy scikit-learn colorlog==4.7.2 colorama==0.4.4
      tensorboard thop tqdm pyyaml tabulate plotly texttable psutil "hyperopt==0.2.5" "setuptools>=77,<81")
# RecBole pins hyperopt 0.2.5 (its exhaustive search passes a RandomState; 0.2.7 wants a Generator),
# and hyperopt 0.2.5 imports pkg_resources: setuptools>=77,<81 still ships it and satisfies torch 2.13.0
# (a setuptools<70 pin made pip swap torch for a 2.12.1 CUDA build, skewing memory comparisons).
missing=()
for d in numpy pandas scipy scikit-learn colorlog colorama tensorboard thop tqdm pyyaml \
         tabulate plotly texttable psutil hyperopt; do
    have "$d" || missing+=("$d")
done
# numpy 2 removed np.float_ (RecBole's Config fails): also reinstall if numpy>=2 slipped in.
if have numpy && ! "$PY" -c 'import sys, numpy; sys.exit(int(numpy.__version__.split(".")[0]) >= 2)'; then
    missing+=("numpy<2")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing deps (missing: ${missing[*]})"
    "$PY" -m pip install "${DEPS[@]}"
fi

# 5. ray stub: recbole.quick_start does `from ray import tune` at import.
if [ ! -f "$RAYSTUB/ray/tune.py" ]; then
    mkdir -p "$RAYSTUB/ray"
    : > "$RAYSTUB/ray/__init__.py"
    printf 'def report(*a, **k):\n    pass\n' > "$RAYSTUB/ray/tune.py"
fi

# 6. smoke check
PYTHONPATH="$RAYSTUB" TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore::FutureWarning \
    "$PY" -c "import recbole, torch, numpy; from recbole.quick_start import run_recbole; \
print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)"
