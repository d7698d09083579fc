"""The torch stages on a CUDA GPU: engine, compare_stores, extraction and training give the
CPU's results. Skipped where no GPU is visible (CI); run on a GPU machine with
``pytest tests/test_gpu.py``."""

import numpy as np
import pytest
import torch

from layersim.data.digits import load_digits
from layersim.engine import BatchGrams, MinibatchCKA, compare_stores
from layersim.extract.torch import extract_torch
from layersim.store import ActivationStore, write_activations
from layersim.train.torch import train_torch
from reference import minibatch_cka

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOL32 = 1e-6


def relu_layers(rng, n, shapes):
    return [np.maximum(rng.normal(size=(n, *s)) + 0.5, 0).astype(np.float32) for s in shapes]


def test_engine_on_the_gpu_equals_the_float64_reference():
    rng = np.random.default_rng(0)
    batches_a = [relu_layers(rng, 64, [(4, 8, 8), (4, 8, 8), (200,), (3,), (16, 16, 16)]) for _ in range(4)]  # 4096 features: sliced
    batches_b = [relu_layers(rng, 64, [(8, 4, 4), (50,)]) for _ in range(4)]
    acc = MinibatchCKA()
    for a, b in zip(batches_a, batches_b):
        acc.update([torch.from_numpy(x).cuda() for x in a], [torch.from_numpy(x).cuda() for x in b])
    np.testing.assert_allclose(acc.compute(), minibatch_cka(batches_a, batches_b), atol=TOL32, rtol=0)
    grams = BatchGrams.from_layers([torch.from_numpy(x).cuda() for x in batches_a[0]])
    assert grams.grams.device.type == "cuda"  # the default backend for GPU tensors is torch
    np.testing.assert_allclose(grams.self_hsic, BatchGrams.from_layers(batches_a[0], np.float64).self_hsic, rtol=1e-5)


def test_compare_stores_on_the_gpu_equals_the_numpy_engine(tmp_path):
    rng = np.random.default_rng(1)
    n = 96
    paths = {}
    for name, shapes in (("a", [(3, 4, 4), (30,), (3, 4, 4)]), ("b", [(12,), (2, 5, 5)])):
        layers = relu_layers(rng, n, shapes)
        layers.append(rng.normal(size=(n, 3)).astype(np.float32))
        names = [f"l{i}" for i in range(len(layers) - 1)] + ["logits"]
        batches = [{k: v[s : s + 16] for k, v in zip(names, layers)} for s in range(0, n, 16)]
        paths[name] = str(write_activations(tmp_path / f"{name}.zarr", batches, sample_id=np.arange(n), labels=np.zeros(n), attrs={}))
    pairs = [("a", "b"), ("a", "a")]
    on_cpu = compare_stores(paths, pairs, batch_size=32, passes=2, threads=2, layer_block=2, progress=False)
    for cache_mb in (1024, 0):  # stores kept on the GPU / read minibatch by minibatch
        on_gpu = compare_stores(paths, pairs, batch_size=32, passes=2, threads=2, layer_block=2, progress=False, device="cuda", cache_mb=cache_mb)
        for pair in pairs:
            np.testing.assert_allclose(on_gpu[pair]["cka"].values, on_cpu[pair]["cka"].values, atol=TOL32, rtol=0)
            assert on_gpu[pair].attrs["device"] == "cuda"


@pytest.fixture(scope="module")
def digits():
    return load_digits(eval_fraction=0.3, split_seed=0, image_size=8)


def test_training_on_the_gpu_is_deterministic_and_saves_a_cpu_checkpoint(tmp_path, digits):
    cfg = {"epochs": 2, "batch_size": 64, "lr": 0.05}
    runs = []
    for name in ("one", "two"):
        history = train_torch({"depth": 8, "width": 1}, cfg, digits, seed=3, checkpoint=tmp_path / f"{name}.pt", history=tmp_path / f"{name}.json", progress=False, device="cuda")
        runs.append(torch.load(tmp_path / f"{name}.pt", map_location="cpu", weights_only=True)["state_dict"])
        assert history["device"] == "cuda" and history["eval_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert all(t.device.type == "cpu" for t in runs[0].values())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_extraction_on_the_gpu_stores_the_cpu_activations(tmp_path, digits, monkeypatch):
    """The same activations as on the CPU; on the GPU the writes overlap the forward pass
    whatever the number of threads."""
    from layersim.extract import torch as extract_module

    train_torch({"depth": 8, "width": 1}, {"epochs": 1}, digits, seed=0, checkpoint=tmp_path / "m.pt", history=tmp_path / "m.json", progress=False, device="cpu")
    overlap, original = [], extract_module.write_activations
    monkeypatch.setattr(extract_module, "write_activations", lambda *a, **kw: overlap.append(kw["overlap"]) or original(*a, **kw))
    for device in ("cpu", "cuda"):
        extract_torch(tmp_path / "m.pt", digits.eval, tmp_path / f"{device}.zarr", batch_size=64, progress=False, device=device, threads=4)
    assert overlap == [False, True]  # 4 threads: taking turns on the CPU, overlapping on the GPU
    cpu, gpu = ActivationStore(tmp_path / "cpu.zarr"), ActivationStore(tmp_path / "cuda.zarr")
    assert gpu.layers == cpu.layers and gpu.attrs["device"] == "cuda"
    rows = np.arange(len(cpu))
    for layer in cpu.layers:
        a, b = cpu.read(layer, rows), gpu.read(layer, rows)
        scale = np.abs(a).max() + 1e-12
        assert np.abs(a - b).max() / scale < 1e-5, layer  # float32 on both (no TF32), not bit-equal
