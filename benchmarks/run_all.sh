#!/usr/bin/env bash
# One benchmark run: every script in turn; what they print also goes to benchmarks/results.txt
# (the peers' progress bars, on stderr, do not).
# Usage: bash benchmarks/run_all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
{
  date -u
  for s in bench_engine bench_peers bench_memory bench_extract bench_store bench_store_dtype bench_pipeline; do
    echo "== $s $*"
    "$PY" "benchmarks/$s.py" "$@"
  done
} | tee benchmarks/results.txt
