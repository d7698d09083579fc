"""Shared pieces of the benchmarks: the standard workload, machine facts, references, timing.

Not a test module: every script prints ratios measured side by side in one run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

N = 256  # samples per minibatch
BATCHES = 4
# the standard workload: 8 layers of 16×32×32, 8 of 32×16×16, 8 of 64×8×8 features per model
STANDARD_SHAPES = [(16, 32, 32)] * 8 + [(32, 16, 16)] * 8 + [(64, 8, 8)] * 8
SEED_SHAPES = Path(__file__).with_name("seed_resnet_shapes.json")


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` wall-clock timings of ``fn()`` (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine_facts() -> dict:
    """CPU, BLAS libraries (threadpoolctl), their kernels and threads, OPENBLAS_* variables."""
    import scipy.linalg.blas  # noqa: F401  (load scipy's BLAS so it is listed)
    import torch
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_1min": os.getloadavg()[0],
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
        "blas": [
            {k: info.get(k) for k in ("prefix", "internal_api", "version", "architecture", "num_threads", "threading_layer")}
            for info in threadpool_info()
        ],
        "torch": {"version": torch.__version__, "blas": "MKL" if torch.backends.mkl.is_available() else "other", "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
    }


def print_facts(facts: dict) -> None:
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, load average {facts['load_average_1min']:.2f}")
    print(f"  OPENBLAS/OMP/MKL env: {facts['env'] or 'none set'}")
    for b in facts["blas"]:
        print(f"  BLAS: {b['prefix']} {b['version'] or ''} kernel={b['architecture']} threads={b['num_threads']} ({b['internal_api']}, {b['threading_layer']})")
    t = facts["torch"]
    print(f"  torch {t['version']}: BLAS {t['blas']}, {t['threads']} threads, cuda={t['cuda']}")


def gemm_rates(size: int = 4096, repeat: int = 3) -> dict[str, float]:
    """GFLOP/s of a ``size``² matmul, numpy (OpenBLAS) and torch (MKL), float32 and float64, all threads."""
    import torch

    rates = {}
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.random((size, size)).astype(dtype)
        b = rng.random((size, size)).astype(dtype)
        a @ b
        rates[f"numpy {np.dtype(dtype).name}"] = 2 * size**3 / best_of(lambda: a @ b, repeat) / 1e9
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta @ tb
        rates[f"torch {np.dtype(dtype).name}"] = 2 * size**3 / best_of(lambda: ta @ tb, repeat) / 1e9
    return rates


def workload_flops(shapes_a, shapes_b, n: int = N, batches: int = BATCHES, pairs=None) -> float:
    """The limit's arithmetic: Grams as symmetric rank-k updates (n²p per layer per batch) plus
    2·La·Lb·n² per batch for the all-pairs products (per compared pair)."""
    grams = sum(n * n * int(np.prod(s)) for s in shapes_a) + (sum(n * n * int(np.prod(s)) for s in shapes_b) if shapes_b is not None else 0)
    products = 2 * len(shapes_a) * len(shapes_b if shapes_b is not None else shapes_a) * n * n
    return batches * (grams + products * (pairs or 1))


def make_model_activations(shapes, *, n: int = N, batches: int = BATCHES, seed: int = 0, shared_seed: int = 1234, latent: int = 32):
    """Post-ReLU-like activations ``[batch][layer] (n, *shape)`` float32 with a latent shared
    across models (so cross-model CKA is neither 0 nor 1) and a positive mean (as after a ReLU:
    the case where float32 Grams lose accuracy unless centred with care)."""
    out = []
    for b in range(batches):
        shared = np.random.default_rng([shared_seed, b]).standard_normal((n, latent // 2), dtype=np.float32)
        rng = np.random.default_rng([seed, b])
        own = rng.standard_normal((n, latent // 2), dtype=np.float32)
        layers = []
        for depth, shape in enumerate(shapes):
            mix = depth / max(1, len(shapes) - 1)
            z = np.concatenate([shared * (1 - 0.5 * mix), own * (0.5 + mix)], axis=1)
            w = np.random.default_rng([seed, 7, depth]).standard_normal((latent, int(np.prod(shape))), dtype=np.float32)
            x = z @ w
            x += 0.5
            np.maximum(x, 0, out=x)
            layers.append(x.reshape(n, *shape))
        out.append(layers)
    return out


def write_model_store(path, batches) -> Path:
    """An activation store of one model's ``batches`` (from :func:`make_model_activations`):
    layers ``l0, l1, …`` and constant logits (reported undefined)."""
    from layersim.store import write_activations

    rows = [{**{f"l{i}": x for i, x in enumerate(layers)}, "logits": np.zeros((len(layers[0]), 10), np.float32)} for layers in batches]
    ids = np.arange(sum(len(layers[0]) for layers in batches))
    return write_activations(path, rows, sample_id=ids, labels=np.zeros_like(ids), attrs={})


def reference_cka64(batches_a, batches_b) -> np.ndarray:
    """Float64 reference: Song et al. (2012) unbiased HSIC from its three terms (no U-centring),
    summed over minibatches, normalised at the end (Nguyen et al. 2021, Eq. 1-2)."""
    ab = aa = bb = 0
    for layers_a, layers_b in zip(batches_a, batches_b):
        n = layers_a[0].shape[0]

        def terms(layers):
            ks = []
            for x in layers:
                x = np.asarray(x, dtype=np.float64).reshape(n, -1)
                k = x @ x.T
                np.fill_diagonal(k, 0)
                ks.append(k)
            g = np.stack([k.reshape(-1) for k in ks])
            r = np.stack([k.sum(1) for k in ks])
            return g, r, r.sum(1)

        ga, ra, ta = terms(layers_a)
        gb, rb, tb = terms(layers_b)

        def hsic(g1, r1, t1, g2, r2, t2):
            return (g1 @ g2.T + np.outer(t1, t2) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (r1 @ r2.T)) / (n * (n - 3))

        ab = ab + hsic(ga, ra, ta, gb, rb, tb)
        aa = aa + np.einsum("ij,ij->i", ga, ga) / (n * (n - 3)) + (ta**2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * np.einsum("ij,ij->i", ra, ra)) / (n * (n - 3))
        bb = bb + np.einsum("ij,ij->i", gb, gb) / (n * (n - 3)) + (tb**2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * np.einsum("ij,ij->i", rb, rb)) / (n * (n - 3))
    return ab / np.sqrt(np.outer(aa, bb))


# --- the seed notebook's code (per-pair Grams, float64), verbatim in substance ---------------


def seed_unbiased_hsic(K, L):
    n = K.shape[0]
    ones = np.ones(shape=(n))
    np.fill_diagonal(K, val=0)
    np.fill_diagonal(L, val=0)
    trace = np.trace(np.dot(K, L))
    nominator1 = np.dot(np.dot(ones.T, K), ones)
    nominator2 = np.dot(np.dot(ones.T, L), ones)
    middle = np.dot(nominator1, nominator2) / ((n - 1) * (n - 2))
    last = 2 / (n - 2) * np.dot(np.dot(ones.T, K), np.dot(L, ones))
    return 1 / (n * (n - 3)) * (trace + middle - last)


def seed_cka(X, Y):
    nominator = seed_unbiased_hsic(np.dot(X, X.T), np.dot(Y, Y.T))
    denominator1 = seed_unbiased_hsic(np.dot(X, X.T), np.dot(X, X.T))
    denominator2 = seed_unbiased_hsic(np.dot(Y, Y.T), np.dot(Y, Y.T))
    return nominator / np.sqrt(denominator1 * denominator2)


def seed_pair(a, b):
    """The seed's ``calculate_CKA_for_two_matrices`` on float64 activations of one batch."""
    a = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
    b = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
    return seed_cka(a, b)


def seed_shapes() -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of every Keras layer of the seed's ResNet50/101 at 32×32 input.

    From ``layersim.models.keras.seed_resnet`` when TensorFlow is installed (and cached in
    ``seed_resnet_shapes.json``), else from that cache.
    """
    if SEED_SHAPES.exists():
        return {k: [tuple(s) for s in v] for k, v in json.loads(SEED_SHAPES.read_text()).items()}
    from layersim.models.keras import seed_resnet

    shapes = {f"resnet{d}": [tuple(int(s) for s in layer.output.shape[1:]) for layer in seed_resnet(d).layers[1:]] for d in (50, 101)}
    SEED_SHAPES.write_text(json.dumps(shapes))
    return shapes
