#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything layersim,
# its workflow and its tests need. Idempotent: a second run with nothing changed is a no-op.
#   bash scripts/setup.sh    # the library + extras workflow (snakemake + SLURM/cluster plugins),
#                            # test (pytest), keras (TensorFlow CPU), rl (minigrid, gymnasium)
#   LAYERSIM_EXTRAS=workflow,test bash scripts/setup.sh   # the pipeline on torch models only
#                            # (no TensorFlow, no minigrid: their rules and tests cannot run)
# The library and notebook API alone, in any environment: pip install . (see README.md).
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
