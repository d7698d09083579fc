"""The pipeline's similarity stage for M models compared all-pairs, before and after each
instance's Grams were computed once per pipeline, measured side by side in one run.

- Before: one job per pair (``M(M+1)/2`` pairs, self-pairs included), each running
  ``compare_stores`` on its two activation stores: every pair recomputes both models' Grams, so
  each model's Grams are computed ``M`` times (``M − 1`` cross pairs and its self-pair once).
- After: the workflow's ``grams`` jobs (``write_gram_store``, one per model) and then one
  ``similarity`` job per pair (``compare_gram_stores``, which reads the two Gram stores).

Every job runs in this process, one after another, with the job's threads (as Snakemake runs
them on a machine with that many cores); the rounds alternate which side goes first. Printed:
Gram computations (model × minibatch × layer) on each side, each side's best wall time and
their ratio, and that both sides give the same CKA matrices bit for bit.

    .venv/bin/python benchmarks/bench_pipeline.py [--models 8] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import N, machine_facts, make_model_activations, print_facts, write_model_store  # noqa: E402

from layersim.engine import UndefinedLayerWarning, compare_gram_stores, compare_stores, write_gram_store  # noqa: E402
from layersim.parallel import default_threads  # noqa: E402

# the standard workload's three stages at a quarter of their features (8 stores fit in RAM)
SHAPES = [(16, 16, 16)] * 8 + [(32, 8, 8)] * 8 + [(64, 4, 4)] * 8


def before(stores: dict, pairs: list, threads: int) -> dict:
    """One compare_stores job per pair (the similarity rule of one pair per job, reading stores)."""
    return {(a, b): compare_stores({a: stores[a], b: stores[b]}, [(a, b)], passes=1, threads=threads, progress=False)[(a, b)] for a, b in pairs}


def after(stores: dict, pairs: list, threads: int, root: Path) -> tuple[dict, float]:
    """The grams jobs, then one compare_gram_stores job per pair; also the grams jobs' share."""
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    grams = {m: str(write_gram_store(path, root / f"{m}.zarr", passes=1, threads=threads, progress=False)) for m, path in stores.items()}
    gram_seconds = time.perf_counter() - start
    results = {(a, b): compare_gram_stores({a: grams[a], b: grams[b]}, [(a, b)], threads=threads, progress=False)[(a, b)] for a, b in pairs}
    return results, gram_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 models, 1 round")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UndefinedLayerWarning)  # the constant logits of the synthetic stores
    models, rounds = (4, 1) if args.quick else (args.models, args.rounds)
    threads = default_threads()
    print_facts(machine_facts())
    pairs = [(f"m{i}", f"m{j}") for i in range(models) for j in range(i, models)]
    batches = 4
    layers = len(SHAPES) + 1  # and the logits
    grams_before = sum(2 if a != b else 1 for a, b in pairs) * batches * layers
    grams_after = models * batches * layers
    print(f"{models} models × {layers} layers, {batches} minibatches of {N}, {len(pairs)} pairs (self-pairs included), {threads} threads per job")
    with tempfile.TemporaryDirectory(prefix="layersim-bench-pipeline-") as tmp:
        tmp = Path(tmp)
        stores = {}
        for i in range(models):
            stores[f"m{i}"] = str(write_model_store(tmp / f"m{i}.zarr", make_model_activations(SHAPES, seed=i, batches=batches)))
        times = {"before": [], "after": [], "grams": []}
        for r in range(rounds):
            for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                start = time.perf_counter()
                if side == "before":
                    old = before(stores, pairs, threads)
                else:
                    new, gram_seconds = after(stores, pairs, threads, tmp / "grams")
                    times["grams"].append(gram_seconds)
                times[side].append(time.perf_counter() - start)
        identical = all(np.array_equal(old[p][v].values, new[p][v].values, equal_nan=True) for p in pairs for v in ("cka", "hsic_sum"))
    t_before, t_after = min(times["before"]), min(times["after"])
    print(f"Gram computations: before {grams_before:,}, after {grams_after:,} ({grams_before / grams_after:.1f}× fewer)")
    print(f"similarity stage wall (best of {rounds}): before {t_before:.1f} s, after {t_after:.1f} s (grams jobs {min(times['grams']):.1f} s): {t_before / t_after:.2f}× faster")
    print(f"CKA matrices bit for bit equal: {identical}")


if __name__ == "__main__":
    main()
