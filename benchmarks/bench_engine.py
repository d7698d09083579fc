"""Engine vs this machine's GEMM limit and vs the seed notebook's naive code.

Standard workload: two models × 24 layers (8 of 16×32×32, 8 of 32×16×16, 8 of 64×8×8
features), n = 256, 4 batches, the full 24×24 cross-model matrix. Prints the GEMM rates and the
limit measured in this run; the Gram kernels' rates at the workload's widths beside this
machine's one-thread GEMM rate, and the engine on one pair with each kernel and with the one
picked by measurement ("auto"), alternating with pytorch-cka; the engine's time (in-memory
accumulator, both thread strategies, and compare_stores from Zarr stores) as a multiple of the
limit, its max error against a float64 reference, the ratio to the seed-style code, and the
seed's own ResNet50 vs ResNet101 case.

    .venv/bin/python benchmarks/bench_engine.py [--quick] [--kernels] [--device cuda]

``--kernels``: stop after the Gram kernels' figures.

``--device cuda``: the same figures on a GPU (torch backend, activations already on the GPU;
the limit from the GPU's float32 GEMM rate without TF32; the naive code stays on the CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import BATCHES, N, STANDARD_SHAPES, best_of, gemm_rates, machine_facts, make_model_activations, print_facts, reference_cka64, seed_pair, seed_shapes, workload_flops, write_model_store  # noqa: E402

from layersim.engine import MinibatchCKA, compare_stores, minibatch_rows  # noqa: E402
from layersim.parallel import default_threads  # noqa: E402


def engine_run(batches_a, batches_b, threads, kernel="auto"):
    acc = MinibatchCKA(threads=threads, gram_kernel=kernel)
    for a, b in zip(batches_a, batches_b):
        acc.update(a, b)
    return acc.compute()


def naive_time(batches_a, batches_b, n_pairs, rng):
    """Seconds per (layer pair, batch) of the seed code, timed on a random sample of pairs."""
    la, lb = len(batches_a[0]), len(batches_b[0])
    picks = [(int(rng.integers(len(batches_a))), int(rng.integers(la)), int(rng.integers(lb))) for _ in range(n_pairs)]
    start = time.perf_counter()
    for b, i, j in picks:
        seed_pair(batches_a[b][i], batches_b[b][j])
    return (time.perf_counter() - start) / n_pairs


def standard_workload(gflops: float, note: str = ""):
    """Print the standard workload's limit at ``gflops`` (float32 GEMM rate); return it (s), the
    two models' activations and their float64 reference CKA."""
    flops = workload_flops(STANDARD_SHAPES, STANDARD_SHAPES)
    limit = flops / (gflops * 1e9)
    print(f"standard workload: {flops / 1e9:.1f} GFLOP (Grams as ?syrk n²p + all-pairs products) → limit {limit:.4f} s at {gflops:.1f} GFLOP/s float32{note}")
    batches_a = make_model_activations(STANDARD_SHAPES, seed=0)
    batches_b = make_model_activations(STANDARD_SHAPES, seed=1)
    return limit, batches_a, batches_b, reference_cka64(batches_a, batches_b)


def store_figures(batches_a, batches_b, limit, *, repeat, threads, device=None):
    """compare_stores from Zarr stores (4 batches of 256 = one pass over 1024 samples): cached
    and out of core, with its max error against a float64 reference. Returns the activations
    concatenated per layer."""
    import warnings

    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: str(write_model_store(Path(tmp) / f"{name}.zarr", batches)) for name, batches in (("a", batches_a), ("b", batches_b))}
        # the reference for the store's own minibatches (logits are constant: excluded)
        full = {name: [np.concatenate([b[i] for b in batches]) for i in range(len(STANDARD_SHAPES))] for name, batches in (("a", batches_a), ("b", batches_b))}
        sel = minibatch_rows(N * BATCHES, N, 1)
        ref_store = reference_cka64([[x[r] for x in full["a"]] for r in sel], [[x[r] for x in full["b"]] for r in sel])

        def run(cache_mb):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the constant logits layer is reported undefined
                return compare_stores(paths, [("a", "b")], batch_size=N, passes=1, threads=threads, cache_mb=cache_mb, progress=False, device=device)

        gib = 2 * sum(int(np.prod(s)) for s in STANDARD_SHAPES) * N * BATCHES * 4 / 2**30
        where = f", on {device}" if device else ""
        for cache_mb, label in ((1024, "cached stores"), (0, "out of core, cache_mb=0")):
            cold, warm = [], []
            for _ in range(repeat):
                start = time.perf_counter()
                out = run(cache_mb)
                cold.append(time.perf_counter() - start)
                if cache_mb:
                    warm.append(best_of(lambda: run(cache_mb), 1))
            err = np.abs(out[("a", "b")]["cka"].values[:-1, :-1] - ref_store).max()
            line = f"engine, compare_stores from Zarr ({label}, {threads} Dask threads{where}): {min(cold):.3f} s = {min(cold) / limit:.2f}× limit including reading {gib:.2f} GiB"
            if warm:
                line += f"; {min(warm):.3f} s = {min(warm) / limit:.2f}× limit once cached"
            print(line + f"; max error {err:.2e}")
    return full


def naive_figure(batches_a, batches_b, engine_seconds: float, quick: bool, where: str = "") -> None:
    """The seed-style naive code (CPU, float64) on the standard workload, timed on a random
    sample of pairs and extrapolated, against the engine's time."""
    per_pair = naive_time(batches_a, batches_b, 6 if quick else 16, np.random.default_rng(0))
    naive_total = per_pair * len(STANDARD_SHAPES) ** 2 * BATCHES
    print(f"seed-style naive code (CPU, numpy float64): {per_pair * 1e3:.0f} ms per layer pair and batch → {naive_total:.0f} s extrapolated to 24×24 pairs × 4 batches; engine{where} is {naive_total / engine_seconds:.0f}× faster")


def seed_case_figure(quick: bool, move=lambda x: x, where: str = "") -> None:
    """The seed's own case: ResNet50 vs ResNet101 at 32×32, every Keras layer, one batch of
    256 (random activations of those layers' shapes; ``move`` puts them on the device)."""
    rng = np.random.default_rng(1)
    acts = {name: [np.maximum(rng.standard_normal((N, *s), dtype=np.float32) + 0.3, 0) for s in shp] for name, shp in seed_shapes().items()}
    a, b = ([move(x) for x in acts[name]] for name in ("resnet50", "resnet101"))
    engine_run([a], [b], None)  # warm-up
    ours = best_of(lambda: engine_run([a], [b], None), 1 if quick else 2)
    per_pair = naive_time([acts["resnet50"]], [acts["resnet101"]], 4 if quick else 12, rng)
    total = per_pair * len(a) * len(b)
    print(f"seed case ResNet50 ({len(a)} layers) vs ResNet101 ({len(b)} layers), 32×32, 1 batch of 256 (random activations of those layers' shapes): engine{where} {ours:.3f} s; naive (CPU) {per_pair * 1e3:.0f} ms/pair × {len(a) * len(b)} pairs = {total:.0f} s (extrapolated from a random sample of pairs) → {total / ours:.0f}× faster")


def torch_gemm_rates(device: str, size: int = 4096, repeat: int = 10) -> dict[str, float]:
    """GFLOP/s of a ``size``² matmul on a torch device, float32 (no TF32) and float64."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    rates = {}
    for dtype in (torch.float32, torch.float64):
        a, b = (torch.rand(size, size, device=device, dtype=dtype) for _ in range(2))

        def product():
            a @ b
            torch.cuda.synchronize(device)

        product()
        rates[f"torch {str(dtype).split('.')[1]}"] = 2 * size**3 / best_of(product, repeat) / 1e9
    return rates


def main_device(device: str, quick: bool) -> None:
    """The engine on a GPU, from activations already there."""
    import torch

    print_facts(machine_facts())
    print(f"device: {device} ({torch.cuda.get_device_name(device)}), torch {torch.__version__}")
    rates = torch_gemm_rates(device)
    print("GEMM 4096² GFLOP/s on the device: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    limit, batches_a, batches_b, ref = standard_workload(rates["torch float32"], " (torch has no syrk: its Gram is a GEMM, 2n²p)")
    on = [[[torch.from_numpy(x).to(device) for x in layers] for layers in batches] for batches in (batches_a, batches_b)]
    cka = engine_run(*on, None)  # warm-up; compute() returns to the host, so every run is synchronised
    t = best_of(lambda: engine_run(*on, None), 5 if quick else 20)
    print(f"engine, in-memory MinibatchCKA.update (torch backend on {device}): {t * 1e3:.2f} ms = {t / limit:.2f}× limit; max |CKA − float64 reference| {np.abs(cka - ref).max():.2e}")
    from layersim.engine import BatchGrams

    def grams_only():
        for a, b in zip(*on):
            BatchGrams.from_models([a, b])  # returns self-HSIC on the host: synchronised

    t_grams = best_of(grams_only, 5 if quick else 20)
    print(f"  of which the Grams (BatchGrams.from_models): {t_grams * 1e3:.2f} ms; a Gram as a GEMM is 2n²p: twice the limit's flops")
    t_cpu = best_of(lambda: engine_run(batches_a, batches_b, None), 2)
    print(f"  the same on this machine's CPU (numpy engine, {default_threads()} threads): {t_cpu:.3f} s → the GPU is {t_cpu / t:.0f}× faster")
    store_figures(batches_a, batches_b, limit, repeat=1, threads=default_threads(), device=device)
    naive_figure(batches_a, batches_b, t, quick, where=f" on {device}")
    del on, batches_a, batches_b
    seed_case_figure(quick, move=lambda x: torch.from_numpy(x).to(device), where=f" on {device}")


def kernel_figures(batches_a, batches_b, ref, limit: float, quick: bool) -> None:
    """The numpy Gram kernels side by side: GFLOP/s (counted n²p) at each of the standard
    workload's widths on one BLAS thread, against a one-thread GEMM; the kernel that
    ``gram_kernel_for`` picks; the engine on one pair with every kernel, with "auto" and
    pytorch-cka (bench_peers' runner), in alternating order, against the limit."""
    import importlib.util

    from layersim.engine.grams import GRAM_KERNELS, gram_kernel_for, measure_gram_kernels
    from layersim.parallel import single_blas_thread

    repeat = 3 if quick else 5
    square = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    with single_blas_thread():
        square @ square
        gemm_one = 2 * 1024**3 / best_of(lambda: square @ square, repeat) / 1e9
    print(f"Gram kernels, n = {N}, float32, 1 BLAS thread, GFLOP/s counted n²p (a GEMM 1024² on 1 BLAS thread: {gemm_one:.1f} GFLOP/s counted 2n³; load average {os.getloadavg()[0]:.2f}):")
    for p in sorted({int(np.prod(s)) for s in STANDARD_SHAPES}, reverse=True):
        seconds = measure_gram_kernels(N, np.float32, widths=(p,), repeats=repeat)
        print(f"  p = {p:5d}: " + ", ".join(f"{name} {N * N * p / t / 1e9:.1f}" for name, t in seconds.items()) + f"  (best {min(seconds, key=seconds.get)})")
    start = time.perf_counter()
    picked = gram_kernel_for(N, np.float32)
    print(f"  gram_kernel_for({N}, float32) → {picked!r}, measured in {time.perf_counter() - start:.2f} s (once per process)")

    auto = "engine, gram_kernel='auto'"
    runs = {f"engine, gram_kernel={name!r}": (lambda name=name: engine_run(batches_a, batches_b, None, name)) for name in [*GRAM_KERNELS, "auto"]}
    if importlib.util.find_spec("cka") is not None:
        from bench_peers import run_pytorch_cka

        runs["pytorch-cka"] = lambda: run_pytorch_cka(batches_a, batches_b)
    else:
        print("  pytorch-cka is not installed: its figure is left out (pip install --no-deps pytorch-cka==1.1.3)")
    times = {label: [] for label in runs}
    for r in range(2 if quick else 3):  # every run in turn, the order reversed every other round
        for label in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            times[label].append(best_of(runs[label], 1))
    errors = {label: np.abs(np.asarray(runs[label](), dtype=np.float64) - ref).max() for label in (auto, "pytorch-cka") if label in runs}
    best = {label: min(t) for label, t in times.items()}
    print(f"one standard pair (24×24 layers, n = {N}, {BATCHES} batches), best of {len(times[auto])} alternating runs; limit {limit:.3f} s:")
    for label, t in best.items():
        line = f"  {label:30s} {t:.3f} s = {t / limit:.2f}× limit"
        if label in errors:
            line += f"; max |CKA − float64 reference| {errors[label]:.1e}"
        print(line)
    if "pytorch-cka" in best:
        print(f"  engine ('auto' = {picked!r}) vs pytorch-cka: {best['pytorch-cka'] / best[auto]:.2f}× faster; load average {os.getloadavg()[0]:.2f}")


def main(quick: bool, kernels_only: bool = False) -> None:
    repeat = 2 if quick else 3
    facts = machine_facts()
    print_facts(facts)
    rates = gemm_rates(repeat=repeat)
    print("GEMM 4096² GFLOP/s (all threads): " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    limit, batches_a, batches_b, ref = standard_workload(max(rates["numpy float32"], rates["torch float32"]))
    kernel_figures(batches_a, batches_b, ref, limit, quick)
    if kernels_only:
        return

    threads = default_threads()
    flops = workload_flops(STANDARD_SHAPES, STANDARD_SHAPES)
    import torch

    square = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    square_torch = torch.from_numpy(square)

    def gemm_now() -> float:
        """float32 GFLOP/s of a 4096² matmul now: the faster of numpy's and torch's."""
        return 2 * 4096**3 / min(best_of(lambda: square @ square, 1), best_of(lambda: square_torch @ square_torch, 1)) / 1e9

    results, paired = {}, {}
    for _ in range(2 * repeat):  # interleaved, best of each (these runs are short: 6 each, ~1.5 s a run)
        for label, t in ((f"layer-parallel ({threads} threads × 1 BLAS thread)", threads), ("sequential (1 thread × all BLAS threads)", 1)):
            # the limit there and then: a 4096² float32 GEMM timed just before this engine run
            limit_now = flops / (gemm_now() * 1e9)
            results.setdefault(label, []).append(best_of(lambda t=t: engine_run(batches_a, batches_b, t), 1))
            paired.setdefault(label, []).append(results[label][-1] / limit_now)
    for label, times in results.items():
        print(
            f"engine, in-memory MinibatchCKA.update, {label}: {min(times):.3f} s = {min(times) / limit:.2f}× limit; "
            f"each run over the limit at the GEMM rate timed just before it: median {np.median(paired[label]):.2f}×, best {min(paired[label]):.2f}× ({len(times)} runs)"
        )
    best_in_memory = min(min(t) for t in results.values())
    cka = engine_run(batches_a, batches_b, None)
    print(f"  max |CKA − float64 reference| (float32 engine): {np.abs(cka - ref).max():.2e}")

    full = store_figures(batches_a, batches_b, limit, repeat=repeat, threads=threads)

    naive_figure(batches_a, batches_b, best_in_memory, quick)
    del batches_a, batches_b, full
    seed_case_figure(quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sampled pairs")
    parser.add_argument("--device", default="cpu", help="torch device (e.g. cuda): the engine's torch backend there")
    parser.add_argument("--kernels", action="store_true", help="stop after the Gram kernels' figures (CPU)")
    args = parser.parse_args()
    if args.device == "cpu":
        main(args.quick, args.kernels)
    else:
        main_device(args.device, args.quick)
