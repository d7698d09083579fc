"""float16 against float32 activation stores (config ``extract.dtype``) on the default digits
workload: two ResNet-20s (seeds 0 and 1, ``epochs`` epochs on digits at 8×8, the default
config's split: 540 evaluation images), each extracted both ways with ``extract_torch``.

Printed: each store's size on disk, ``compare_stores`` wall time (self-comparison and the
cross-seed pair, best of ``--repeat``), and the CKA error of the float16 stores, max |Δ| over
the layer × layer matrix against the float32 stores' CKA (same minibatches).

    .venv/bin/python benchmarks/bench_store_dtype.py [--epochs 2] [--repeat 3] [--dir D] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine_facts, print_facts

from layersim.config import train_defaults
from layersim.data import load_dataset
from layersim.engine import compare_stores
from layersim.extract.torch import extract_torch
from layersim.train.torch import train_torch

DATASET = {"name": "digits", "path": None, "eval_fraction": 0.3, "split_seed": 0, "image_size": 8}


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def best_time(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(args) -> None:
    print_facts(machine_facts())
    threads = len(os.sched_getaffinity(0))
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_dtype_"))
    dataset = load_dataset(DATASET)
    stores: dict[str, dict[str, Path]] = {"float32": {}, "float16": {}}
    for seed in (0, 1):
        checkpoint = work / f"resnet20x1-s{seed}.pt"
        if not checkpoint.exists():
            train_torch({"depth": 20, "width": 1}, {**train_defaults(), "epochs": args.epochs}, dataset, seed=seed, checkpoint=checkpoint, history=work / f"s{seed}.history.json", threads=threads, progress=False)
        for dtype in stores:
            path = work / f"s{seed}-{dtype}.zarr"
            if not path.exists():
                start = time.perf_counter()
                extract_torch(checkpoint, dataset.eval, path, attrs={}, threads=threads, progress=False, dtype=dtype)
                print(f"extract s{seed} {dtype}: {time.perf_counter() - start:.2f} s")
            stores[dtype][f"s{seed}"] = path
    print(f"{len(dataset.eval.sample_id)} evaluation images, ResNet-20 trained {args.epochs} epochs; {threads} threads")
    results = {}
    for dtype, paths in stores.items():
        sizes = [du(p) for p in paths.values()]
        print(f"{dtype}: store {sizes[0] / 2**20:.1f} MiB (seed 0), {sizes[1] / 2**20:.1f} MiB (seed 1)")
        for pair in (("s0", "s0"), ("s0", "s1")):
            seconds, out = best_time(lambda: compare_stores({k: str(v) for k, v in paths.items()}, [pair], batch_size=256, passes=10, threads=threads, progress=False)[pair], args.repeat)
            results[dtype, pair] = out["cka"].values
            print(f"{dtype}: compare_stores {pair[0]} vs {pair[1]} ({out['cka'].shape[0]}×{out['cka'].shape[1]} layers, 10 passes of 256): {seconds:.2f} s (best of {args.repeat})")
    for pair in (("s0", "s0"), ("s0", "s1")):
        delta = np.abs(results["float16", pair] - results["float32", pair])
        print(f"CKA float16 vs float32, {pair[0]} vs {pair[1]}: max |Δ| {np.nanmax(delta):.2e}, mean |Δ| {np.nanmean(delta):.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="working directory (kept; reused if it holds the checkpoints and stores)")
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    main(args)
