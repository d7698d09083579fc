#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything layersim,
# its workflow and its tests need. Idempotent: a second run with nothing changed is a no-op.
#   bash scripts/setup.sh            # torch, zarr, dask, snakemake (+ SLURM/cluster plugins), pytest
#   LAYERSIM_EXTRAS=workflow,test,keras bash scripts/setup.sh   # also TensorFlow (Keras rules/tests)
#   (the default extras also include rl: minigrid + gymnasium for the MiniGrid PPO agents)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=${LAYERSIM_EXTRAS:-workflow,test,keras,rl}
stamp=.venv/.layersim-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first, pinned: the CPU wheel (every later call keeps the pin through constraints.txt)
"${pip[@]}" install torch==2.13.0 -c constraints.txt
"${pip[@]}" install -c constraints.txt -e ".[$extras]"
.venv/bin/python -m pip check
echo "$want" > "$stamp"
