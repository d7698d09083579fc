"""Peak RSS of compare_stores out of core (cache_mb=0) at 1× and 4× the samples of a Zarr store.

Each size runs in its own subprocess (peak RSS is per process), set up as the similarity job's
process is (``layersim.jobs.release_freed_blocks_to_the_os``). Layers: the standard shapes
(4 of each size, 12 a model; --quick: 1 of each), n = 256, one pass.

    .venv/bin/python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import N, STANDARD_SHAPES  # noqa: E402

# Peak RSS is the child's VmHWM (/proc/self/status): unlike getrusage's ru_maxrss, which Linux
# carries across fork + exec (so a child would report at least its parent's RSS at the fork),
# VmHWM belongs to the child's own address space.
CHILD = """
import json, sys, warnings
import numpy as np
from layersim.engine import compare_stores
from layersim.jobs import release_freed_blocks_to_the_os

release_freed_blocks_to_the_os()  # as layersim.jobs.run does for the similarity job


def vm_hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

warnings.simplefilter("ignore")
paths = json.loads(sys.argv[1])
before = vm_hwm_kib()
out = compare_stores(paths, [("a", "b")], batch_size=256, passes=1, threads=2, cache_mb=0, progress=False)
print(json.dumps({"imports_kib": before, "peak_kib": vm_hwm_kib(), "batches": out[("a", "b")].attrs["n_batches"]}))
"""


def write_store(path, shapes, n_samples, seed):
    from layersim.store import write_activations

    rng = np.random.default_rng(seed)

    def batches():
        for _ in range(n_samples // N):
            row = {f"l{i}": np.maximum(rng.standard_normal((N, *s), dtype=np.float32), 0) for i, s in enumerate(shapes)}
            row["logits"] = rng.standard_normal((N, 10), dtype=np.float32)
            yield row

    return str(write_activations(path, batches(), sample_id=np.arange(n_samples), labels=np.zeros(n_samples), attrs={}, shard_chunks=2))


def main(quick: bool) -> None:
    shapes = STANDARD_SHAPES[::8] if quick else STANDARD_SHAPES[::2]
    base = 4 * N
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 4):
            n = base * factor
            paths = {m: write_store(Path(tmp) / f"{m}{factor}.zarr", shapes, n, seed) for seed, m in enumerate("ab")}
            res = json.loads(subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths)], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            peaks[factor] = res["peak_kib"] / 1024
            size = sum(int(np.prod(s)) for s in shapes) * n * 4 * 2 / 2**20
            print(f"{factor}× samples ({n}, {res['batches']} batches, stores {size:.0f} MiB): peak RSS {peaks[factor]:.0f} MiB (after imports {res['imports_kib'] / 1024:.0f} MiB)")
            for p in paths.values():
                __import__("shutil").rmtree(p)
    print(f"peak RSS at 4× / 1× samples: {peaks[4] / peaks[1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 layers a model instead of 12")
    main(parser.parse_args().quick)
