#!/usr/bin/env bash
# PyKEEN 1.11.1 (the field's standard KG-embedding library) in its own virtualenv, for
# bench/kg_pykeen.py. Same torch build as the project (the local CPU wheel). Idempotent.
#
#   PYKEEN_VENV  venv path (default: $HOME/pykeen-venv)
set -euo pipefail
PYKEEN_VENV="${PYKEEN_VENV:-$HOME/pykeen-venv}"
PY="$PYKEEN_VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$PYKEEN_VENV"
"$PY" -m pip show torch >/dev/null 2>&1 || "$PY" -m pip install -q torch==2.13.0
"$PY" -m pip show pykeen >/dev/null 2>&1 || "$PY" -m pip install -q "pykeen==1.11.1"
"$PY" -c "import pykeen, torch; print('pykeen', pykeen.get_version(), 'torch', torch.__version__)"
