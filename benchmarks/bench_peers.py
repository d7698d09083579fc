"""layersim vs the PyPI peers pytorch-cka, ckatorch and torch-cka on the same activations.

One pair (the standard workload: 2 models × 24 layers, n = 256, 4 batches) and eight models
compared all-pairs (28 pairs; 2 batches each to fit memory). The peers run through their own
APIs on minimal torch modules that replay precomputed activations (torchvision is unavailable).
Estimators: pytorch-cka — Song's unbiased HSIC from raw float32 Grams (no centring), summed
over batches, clamped to [0, 1]; ckatorch — ``cka_batch`` (unbiased HSIC₁, float64, per pair both
Grams), its ``CKA`` object fed all batches stacked as one (B, n, p) input; torch-cka — Song's
unbiased HSIC, float32, the second model's Gram recomputed for every pair. ckatorch is timed
on 3×3 layer pairs (one layer of each size per model) and extrapolated ×64, torch-cka on 3×24
and ×8 (exact for their per-pair costs); the output says so. In the eight-model case they are
extrapolated from their one-pair times; pytorch-cka runs all 28 comparisons.

Needs the ``bench`` extra: pytorch-cka==1.1.3 ckatorch==1.0.3 torch-cka==0.21 (``--no-deps``).
layersim's numpy engine computes with numpy's BLAS; the peers with torch's (MKL).

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--device cuda]

With ``--device cuda`` every library computes on the GPU from activations already there.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _common import N, STANDARD_SHAPES, machine_facts, make_model_activations, print_facts, reference_cka64  # noqa: E402

from layersim.engine import BatchGrams, MinibatchCKA  # noqa: E402

DEVICE = "cpu"  # --device


class Tap(nn.Module):
    def __init__(self, index: int, source: list):
        super().__init__()
        self.index, self.source = index, source

    def forward(self, x):
        return self.source[0][self.index]


class Replay(nn.Module):
    """A 'model' whose layers output precomputed activations: the input's first value picks the batch."""

    def __init__(self, batches, stacked: bool = False):
        super().__init__()
        self.batches = [[torch.from_numpy(x).to(DEVICE) for x in layers] for layers in batches]
        if stacked:  # one (B, n, p) tensor per layer (ckatorch's cka_batch input)
            self.batches = [[torch.stack([self.batches[b][i].reshape(N, -1) for b in range(len(batches))]) for i in range(len(batches[0]))]]
        self.current: list = [None]
        self.layers = nn.ModuleList([Tap(i, self.current) for i in range(len(batches[0]))])

    def forward(self, x):
        self.current[0] = self.batches[int(x.reshape(-1)[0])]
        for layer in self.layers:
            layer(x)
        return x


def loader(n_batches):
    idx = torch.arange(n_batches).repeat_interleave(N).float()
    return DataLoader(TensorDataset(idx, torch.zeros(len(idx))), batch_size=N, shuffle=False)


def names(idx):
    return [f"layers.{i}" for i in idx]


def on_device(batches):
    """Activations as torch tensors on DEVICE (numpy arrays on the CPU: the numpy engine)."""
    return batches if DEVICE == "cpu" else [[torch.from_numpy(x).to(DEVICE) for x in layers] for layers in batches]


def run_ours(batches_a, batches_b, dtype=np.float32):
    acc = MinibatchCKA(dtype)
    for a, b in zip(batches_a, batches_b):
        acc.update(a, b)
    return acc.compute()


def run_pytorch_cka(batches_a, batches_b, rows=None):
    from cka import compute_cka

    la, lb = len(batches_a[0]), len(batches_b[0])
    rows = list(range(la)) if rows is None else rows
    return compute_cka(Replay(batches_a), Replay(batches_b), loader(len(batches_a)), layers=names(rows), model2_layers=names(range(lb)), device=DEVICE, progress=False)[0].double().cpu().numpy()


def ckatorch_models(batches_a, batches_b):
    """ckatorch's input: every layer's batches stacked as one (B, n, p) tensor (built untimed)."""
    return Replay(batches_a, stacked=True), Replay(batches_b, stacked=True)


def run_ckatorch(models, rows, cols):
    from ckatorch import CKA

    cka = CKA(*models, layers=names(rows), second_layers=names(cols), first_name="a", second_name="b", device=DEVICE)
    one = DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)
    return cka(one, epochs=1).double().cpu().numpy()


def run_torch_cka(batches_a, batches_b, rows):
    from torch_cka import CKA

    lb = len(batches_b[0])
    cka = CKA(Replay(batches_a), Replay(batches_b), model1_name="a", model2_name="b", model1_layers=names(rows), model2_layers=names(range(lb)), device=DEVICE)
    cka.compare(loader(len(batches_a)))
    return cka.export()["CKA"].double().cpu().numpy()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


PEER_MODULES = {"cka": "pytorch-cka==1.1.3", "ckatorch": "ckatorch==1.0.3", "torch_cka": "torch-cka==0.21"}  # module → pin
BENCH_EXTRA = ["torch==2.13.0", *PEER_MODULES.values(), "safetensors==0.8.0", "seaborn==0.13.2"]  # pyproject's `bench`, torch kept


def missing_peers() -> list[str]:
    """The pinned peer packages (the ``bench`` extra) that cannot be imported here."""
    import importlib.util

    return [pin for module, pin in PEER_MODULES.items() if importlib.util.find_spec(module) is None]


def main(quick: bool) -> None:
    missing = missing_peers()
    if missing:
        raise SystemExit(
            f"bench_peers: the peer libraries {', '.join(missing)} are not installed. Install the benchmark extra "
            "(--no-deps: they ask for torchvision, which does not work here):\n"
            f"  .venv/bin/python -m pip install --no-deps {' '.join(BENCH_EXTRA)}"
        )
    print_facts(machine_facts())
    if DEVICE != "cpu":
        print(f"device: {DEVICE} ({torch.cuda.get_device_name(DEVICE)}), every library computing there")
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    warnings.simplefilter("ignore")
    batches_a = make_model_activations(STANDARD_SHAPES, seed=0)
    batches_b = make_model_activations(STANDARD_SHAPES, seed=1)
    ref = reference_cka64(batches_a, batches_b)
    ours_a, ours_b = on_device(batches_a), on_device(batches_b)
    run_ours(ours_a, ours_b)  # warm-up (CUDA context and kernels on a GPU)
    rows = [0, 8, 16]  # one layer of each size: ×8 gives all 24
    print("one pair (24×24 layers, n = 256, 4 batches):")
    # layersim and pytorch-cka (the close one) alternate, best of each: both see the same load
    ours_times, pc_runs = [], []
    for _ in range(2 if quick else 4):
        ours_times.append(timed(lambda: run_ours(ours_a, ours_b))[0])
        pc_runs.append(timed(lambda: run_pytorch_cka(batches_a, batches_b)))
    t_ours = min(ours_times)
    t_pc, out_pc = min(pc_runs, key=lambda r: r[0])
    cka = run_ours(ours_a, ours_b)
    print(f"  layersim      {t_ours:8.2f} s  max error {np.abs(cka - ref).max():.1e}  (unbiased HSIC, float32 Grams, float64 sums)")
    t64, out = timed(lambda: run_ours(ours_a, ours_b, np.float64))
    print(f"  layersim f64  {t64:8.2f} s  max error {np.abs(out - ref).max():.1e}  (dtype=float64)")
    print(f"  pytorch-cka   {t_pc:8.2f} s  max error {np.abs(out_pc - ref).max():.1e}  ratio {t_pc / t_ours:.1f}×  (best of {len(pc_runs)}, alternating with layersim's)")
    peers = {"pytorch-cka": t_pc}
    # ckatorch: every pair costs both Grams (∝ p_a + p_b): 3×3 layers, one of each size, ×64 is exact
    stacked = ckatorch_models(batches_a, batches_b)
    t, out = timed(lambda: run_ckatorch(stacked, rows, rows))
    del stacked
    peers["ckatorch"] = t * 64
    print(f"  ckatorch      {t * 64:8.2f} s  max error {np.abs(out - ref[np.ix_(rows, rows)]).max():.1e}  ratio {t * 64 / t_ours:.1f}×  (timed on 3×3 layer pairs, one per size, ×64)")
    # torch-cka: model a's Gram once per layer, model b's once per pair: 3×24 layers ×8 is exact
    t, out = timed(lambda: run_torch_cka(batches_a, batches_b, rows))
    peers["torch-cka"] = t * 8
    print(f"  torch-cka     {t * 8:8.2f} s  max error {np.abs(out - ref[rows]).max():.1e}  ratio {t * 8 / t_ours:.1f}×  (timed on 3×24 layer pairs, ×8)")
    fastest = min(peers, key=peers.get)
    print(f"  one pair: layersim is {peers[fastest] / t_ours:.1f}× faster than the fastest peer ({fastest})")
    del batches_a, batches_b, ours_a, ours_b

    n_models, n_batches = 8, (1 if quick else 2)
    models = [make_model_activations(STANDARD_SHAPES, seed=m, batches=n_batches) for m in range(n_models)]
    ours = [on_device(m) for m in models]
    pairs = [(i, j) for i in range(n_models) for j in range(i + 1, n_models)]
    print(f"eight models all-pairs ({len(pairs)} pairs, 24×24 layers each, n = 256, {n_batches} batch(es)):")
    start = time.perf_counter()
    accs = {p: MinibatchCKA() for p in pairs}
    for b in range(n_batches):
        grams = BatchGrams.from_models([ours[m][b] for m in range(n_models)])  # once per model and batch
        for i, j in pairs:
            accs[(i, j)].update_grams(grams[i], grams[j])
    results = {p: acc.compute() for p, acc in accs.items()}
    t_ours = time.perf_counter() - start
    print(f"  layersim      {t_ours:8.2f} s  (each model's Grams once per batch, shared by its 7 pairs)")
    start = time.perf_counter()
    for i, j in pairs:
        run_pytorch_cka(models[i], models[j])
    t_pc = time.perf_counter() - start
    print(f"  pytorch-cka   {t_pc:8.2f} s  ratio {t_pc / t_ours:.1f}×  ({len(pairs)} compute_cka calls)")
    scale = n_batches / 4 * len(pairs)
    for label in ("ckatorch", "torch-cka"):
        print(f"  {label:12s}  {peers[label] * scale:8.1f} s  ratio {peers[label] * scale / t_ours:.0f}×  (one-pair time × {len(pairs)} pairs × {n_batches}/4 batches)")
    print(f"  eight models: layersim is {min(t_pc, peers['ckatorch'] * scale, peers['torch-cka'] * scale) / t_ours:.1f}× faster than the fastest peer")
    del results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, one batch for the eight-model case")
    parser.add_argument("--device", default="cpu", help="torch device of every library (e.g. cuda)")
    args = parser.parse_args()
    DEVICE = args.device
    main(args.quick)
