#!/usr/bin/env bash
# The GPU checks in one run, on a machine with a CUDA GPU and torch: the GPU tests, then the
# engine, peer and extraction benchmarks with --device cuda. Output also goes to
# $OUT/results_gpu.txt (default benchmarks/results_gpu.txt), without the peers' progress bars.
# Usage: bash benchmarks/run_gpu.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEST=${OUT:-benchmarks}
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  echo "== pytest tests/test_gpu.py and the torch-backend engine tests"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine_dask.py -k "gpu or torch"
  for s in bench_engine bench_peers bench_extract; do
    echo "== $s --device cuda $*"
    "$PY" "benchmarks/$s.py" --device cuda "$@"
  done
} 2>&1 | grep --line-buffered -v 'it/s\]' | tee "$DEST/results_gpu.txt"  # without the peers' progress bars
