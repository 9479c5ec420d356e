#!/usr/bin/env bash
# Mutation testing of desktop/agentray/engine and desktop/agentray/tools (scripts/mutate.py):
# one mutant at a time, in a temporary copy of desktop/, at the lowest CPU priority.
#   scripts/mutate.sh --sample 40 --seed 1     a sample of 40 mutants
#   scripts/mutate.sh --module engine/_run.py  every mutant of one module
#   scripts/mutate.sh --help                   the options
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=${PYTHON:-python3}
exec nice -n 19 "$PY" scripts/mutate.py "$@"
