"""The Dask engine (compare_stores) and the accumulator's performance structure: float64
reference over several batches, merge of split states, Dask == in-memory, the distributed path
on a LocalCluster, Gram counts, the torch backend and the balanced layer blocks."""

import threading

import numpy as np
import pytest
import torch

import layersim.engine.grams
from layersim.engine.grams import gram_matrix
import layersim.engine.stores as engine_stores
from layersim.engine import BatchGrams, MinibatchCKA, compare_gram_stores, compare_stores, minibatch_rows, u_centred_gram, write_gram_store
from layersim.parallel import balanced_blocks
from layersim.store import ActivationStore, GramStore, StoreError, write_activations
from reference import minibatch_cka

TOL32 = 1e-6  # float32 Grams (centring terms in float64), float64 sums
N_SAMPLES = 48
SHAPES = {"m0": [(3, 4, 4), (10,), (2, 2, 2), (6,)], "m1": [(5,), (2, 3, 3)], "m2": [(7,), (4,), (3, 2)]}


def relu_layers(rng, n, shapes):
    """Post-ReLU-like activations (positive mean: the hard case for float32 Grams)."""
    return [np.maximum(rng.normal(size=(n, *s)) + 0.5, 0).astype(np.float32) for s in shapes]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    rng = np.random.default_rng(0)
    paths, data = {}, {}
    for name, shapes in SHAPES.items():
        layers = relu_layers(rng, N_SAMPLES, shapes) + [rng.normal(size=(N_SAMPLES, 3)).astype(np.float32)]
        names = [f"l{i}" for i in range(len(shapes))] + ["logits"]
        data[name] = layers
        batches = [{k: v[s : s + 8] for k, v in zip(names, layers)} for s in range(0, N_SAMPLES, 8)]
        paths[name] = str(write_activations(root / f"{name}.zarr", batches, sample_id=np.arange(N_SAMPLES), labels=np.zeros(N_SAMPLES), attrs={"model": name}, shard_chunks=2))
    return paths, data


def in_memory(data, a, b, batch_size, passes, dtype=np.float64, threads=1):
    acc = MinibatchCKA(dtype, threads=threads)
    for rows in minibatch_rows(N_SAMPLES, batch_size, passes):
        acc.update([x[rows] for x in data[a]], [x[rows] for x in data[b]])
    return acc


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_engine_equals_float64_reference_over_batches(seed, threads):
    rng = np.random.default_rng(seed)
    batches_a = [relu_layers(rng, 32, [(4, 5, 5), (30,), (3,)]) for _ in range(5)]
    batches_b = [[np.maximum(a[1][:, :20] + rng.normal(size=(32, 20)), 0), *relu_layers(rng, 32, [(2, 8, 8)])] for a in batches_a]
    acc = MinibatchCKA(threads=threads)
    for a, b in zip(batches_a, batches_b):
        acc.update(a, b)
    np.testing.assert_allclose(acc.compute(), minibatch_cka(batches_a, batches_b), atol=TOL32, rtol=0)


def test_gram_layout_and_u_centred_gram():
    """A Gram's row holds its entries above the diagonal, row by row; the Gram is symmetric
    with a zero diagonal and rows summing to 0, and equals an independent float64 U-centring."""
    rng = np.random.default_rng(3)
    x = relu_layers(rng, 12, [(7,)])[0]
    g = BatchGrams.from_layers([x], np.float64)
    assert g.grams.shape == (1, 66)
    full = u_centred_gram(x, np.float64)
    np.testing.assert_array_equal(g.grams[0], full[np.triu_indices(12, 1)])
    np.testing.assert_array_equal(gram_matrix(g.grams[0], 12), full)
    k = x.reshape(12, -1).astype(np.float64) @ x.reshape(12, -1).T.astype(np.float64)
    np.fill_diagonal(k, 0)
    reference = k - k.sum(0)[None] / 10 - k.sum(1)[:, None] / 10 + k.sum() / (11 * 10)
    np.fill_diagonal(reference, 0)
    np.testing.assert_allclose(full, reference, atol=1e-9)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    np.testing.assert_allclose(full.sum(0), 0, atol=1e-9)
    np.testing.assert_array_equal(np.diag(full), 0)


def test_merge_of_split_states_equals_one_accumulator(stores):
    _, data = stores
    rows = minibatch_rows(N_SAMPLES, 8, 3)
    whole = MinibatchCKA(np.float64)
    parts = [MinibatchCKA(np.float64) for _ in range(4)]
    for i, r in enumerate(rows):
        args = ([x[r] for x in data["m0"]], [x[r] for x in data["m1"]])
        whole.update(*args)
        parts[i % 4].update(*args)
    merged = MinibatchCKA(np.float64)
    for p in (parts[2], parts[0], parts[3], parts[1]):  # any order
        merged.merge(p)
    np.testing.assert_allclose(merged.hsic_ab, whole.hsic_ab, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.compute(), whole.compute(), atol=1e-12)
    assert merged.n_batches == whole.n_batches == len(rows)


@pytest.mark.parametrize("cache_mb", [0, 1024])  # out of core (shard by shard) and cached
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dask_path_equals_in_memory_path(stores, cache_mb, dtype):
    paths, data = stores
    pairs = [("m0", "m1"), ("m0", "m0"), ("m2", "m1")]
    out = compare_stores(paths, pairs, batch_size=8, passes=2, dtype=dtype, threads=2, layer_block=2, split_every=2, cache_mb=cache_mb, progress=False)
    for a, b in pairs:
        ref = in_memory(data, a, b, 8, 2, np.dtype(dtype))
        ds = out[(a, b)]
        tol = 1e-12 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(ds["cka"].values, ref.compute(), atol=tol)
        np.testing.assert_allclose(ds["hsic_sum"].values, ref.hsic_ab, rtol=1e-5 if dtype == "float32" else 1e-10, atol=1e-9)
        assert ds.attrs["n_batches"] == ref.n_batches == 12
        assert list(ds["layer_a"].values) == ActivationStore(paths[a]).layers


def test_distributed_path_on_a_local_cluster_gives_identical_results(stores, tmp_path):
    from distributed import LocalCluster

    paths, _ = stores
    pairs = [("m0", "m1"), ("m1", "m1")]
    local = compare_stores(paths, pairs, batch_size=8, passes=2, dtype="float64", threads=1, layer_block=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        remote = compare_stores(paths, pairs, batch_size=8, passes=2, dtype="float64", threads=1, layer_block=2, scheduler_address=cluster.scheduler_address, progress=False)
        grams = {m: str(write_gram_store(paths[m], tmp_path / f"{m}.zarr", batch_size=8, passes=2, dtype="float64", layer_block=2, scheduler_address=cluster.scheduler_address, progress=False)) for m in ("m0", "m1")}
    from_grams = compare_gram_stores(grams, pairs, threads=1, progress=False)
    for pair in pairs:
        for result in (remote, from_grams):
            np.testing.assert_array_equal(result[pair]["cka"].values, local[pair]["cka"].values)
            np.testing.assert_array_equal(result[pair]["hsic_sum"].values, local[pair]["hsic_sum"].values)


@pytest.mark.parametrize("cache_mb", [0, 1024])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pairs_from_gram_stores_equal_compare_stores_bit_for_bit(stores, tmp_path, cache_mb, dtype):
    """Each model's Grams written once and read by every pair it is in: the same sums in the same
    order as compare_stores, so every variable and attribute is the same, and CKA matches the
    float64 in-memory reference."""
    paths, data = stores
    pairs = [("m0", "m1"), ("m0", "m0"), ("m2", "m1"), ("m2", "m0")]
    direct = compare_stores(paths, pairs, batch_size=8, passes=2, dtype=dtype, threads=2, layer_block=2, split_every=2, cache_mb=cache_mb, progress=False)
    grams = {m: str(write_gram_store(p, tmp_path / f"{m}.zarr", batch_size=8, passes=2, dtype=dtype, threads=2, layer_block=2, cache_mb=cache_mb, progress=False)) for m, p in paths.items()}
    reused = compare_gram_stores(grams, pairs, threads=2, split_every=2, progress=False)
    for a, b in pairs:
        for name in ("cka", "hsic_sum", "hsic_aa_sum", "hsic_bb_sum"):
            np.testing.assert_array_equal(reused[(a, b)][name].values, direct[(a, b)][name].values)
        assert reused[(a, b)].attrs == direct[(a, b)].attrs
        assert list(reused[(a, b)]["layer_b"].values) == ActivationStore(paths[b]).layers
        np.testing.assert_allclose(reused[(a, b)]["cka"].values, in_memory(data, a, b, 8, 2).compute(), atol=1e-12 if dtype == "float64" else TOL32)
    store = GramStore(grams["m0"])
    assert store.self_hsic.shape == (len(minibatch_rows(N_SAMPLES, 8, 2)), len(SHAPES["m0"]) + 1)
    assert store.attrs["model"] == "m0" and store.attrs["dtype"] == dtype


def test_gram_stores_compute_each_gram_once_and_pairs_none(stores, tmp_path, monkeypatch):
    paths, _ = stores
    calls = []
    original = engine_stores._gram_numpy

    def counting(x, dtype, out, kernel="syrk"):
        calls.append(x.shape)
        return original(x, dtype, out, kernel)

    monkeypatch.setattr(engine_stores, "_gram_numpy", counting)
    grams = {m: str(write_gram_store(p, tmp_path / f"{m}.zarr", batch_size=8, passes=2, threads=1, progress=False)) for m, p in paths.items()}
    n_batches = len(minibatch_rows(N_SAMPLES, 8, 2))
    assert len(calls) == n_batches * sum(len(ActivationStore(p).layers) for p in paths.values())
    calls.clear()
    names = list(SHAPES)
    compare_gram_stores(grams, [(a, b) for i, a in enumerate(names) for b in names[i:]], threads=1, progress=False)
    assert calls == []


def test_gram_stores_of_another_schedule_or_samples_are_refused(stores, tmp_path):
    paths, _ = stores
    base = write_gram_store(paths["m0"], tmp_path / "base.zarr", batch_size=8, passes=2, threads=1, progress=False)
    for name, change in (("batch_size", {"batch_size": 16}), ("passes", {"passes": 1}), ("dtype", {"dtype": "float64"})):
        other = write_gram_store(paths["m1"], tmp_path / f"{name}.zarr", **{"batch_size": 8, "passes": 2, "threads": 1, "progress": False, **change})
        with pytest.raises(StoreError, match=rf"Gram stores .* are not comparable: their {name} differ"):
            compare_gram_stores({"a": str(base), "b": str(other)}, [("a", "b")], progress=False)
    with pytest.raises(engine_stores.EstimatorError, match="without a Gram store: \\['c'\\]"):
        compare_gram_stores({"a": str(base)}, [("a", "c")], progress=False)


def test_one_gram_per_layer_per_batch_per_model(stores, monkeypatch):
    paths, _ = stores
    calls = []
    lock = threading.Lock()
    original = engine_stores._gram_numpy

    def counting(x, dtype, out, kernel="syrk"):
        with lock:
            calls.append(x.shape)
        return original(x, dtype, out, kernel)

    monkeypatch.setattr(engine_stores, "_gram_numpy", counting)
    names = list(SHAPES)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i:]]  # all pairs and self-pairs of M = 3 models
    compare_stores(paths, pairs, batch_size=8, passes=2, threads=2, layer_block=2, progress=False)
    n_batches = len(minibatch_rows(N_SAMPLES, 8, 2))
    layers = sum(len(ActivationStore(p).layers) for p in paths.values())
    assert len(calls) == layers * n_batches  # not once per pair


def blas_threads() -> int:
    """The largest thread count of the BLAS libraries loaded now."""
    from threadpoolctl import threadpool_info

    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


class BlasThreadsSpy(np.ndarray):
    """Grams that record the BLAS thread count at each matrix product they take part in."""

    seen: list[int] = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul:
            BlasThreadsSpy.seen.append(blas_threads())
        inputs = [np.asarray(x) if isinstance(x, BlasThreadsSpy) else x for x in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs)


def test_all_pairs_product_keeps_to_one_blas_thread_per_pool_thread(monkeypatch):
    """threads > 1: the cross product (and the self-similarity product) runs with one BLAS
    thread per pool thread, as the Grams do, so that no BLAS thread pool spins through the next
    batch's Grams; threads = 1 (what a Dask task uses) leaves the BLAS thread count alone."""
    from threadpoolctl import threadpool_limits

    import layersim.parallel

    layersim.parallel._blas_libraries.cache_clear()  # a fresh one: it sees every BLAS loaded so far
    rng = np.random.default_rng(4)
    layers_a, layers_b = relu_layers(rng, 16, [(5,), (3, 2), (7,), (4,), (6,)]), relu_layers(rng, 16, [(8,), (2, 2), (5,)])
    grams_a, grams_b = BatchGrams.from_models([layers_a, layers_b], np.float64, threads=1)
    spy_a, spy_b = (BatchGrams(g.grams.view(BlasThreadsSpy), g.n, g.self_hsic, g.nonconstant) for g in (grams_a, grams_b))
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("BLAS runs one thread on this machine")
        for threads, expected_blas_threads in ((2, 1), (1, 2)):
            for spied_b, plain_b in ((spy_b, grams_b), (spy_a, grams_a)):  # cross-model, then self-similarity
                BlasThreadsSpy.seen.clear()
                acc = MinibatchCKA(np.float64, threads=threads)
                acc.update_grams(spy_a, spied_b)
                assert BlasThreadsSpy.seen and set(BlasThreadsSpy.seen) == {expected_blas_threads}, (threads, BlasThreadsSpy.seen)
                plain = MinibatchCKA(np.float64, threads=1)
                plain.update_grams(grams_a, plain_b)
                np.testing.assert_allclose(acc.hsic_ab, plain.hsic_ab, rtol=1e-12, atol=0)
    acc = MinibatchCKA(np.float64, threads=2)
    acc.update_grams(grams_a, grams_b)
    np.testing.assert_allclose(acc.compute(), minibatch_cka([layers_a], [layers_b]), atol=1e-12, rtol=0)


def test_torch_backend_gives_the_numpy_results():
    rng = np.random.default_rng(5)
    a, b = relu_layers(rng, 20, [(3, 4, 4), (10,)]), relu_layers(rng, 20, [(7,)])
    acc_np, acc_t = MinibatchCKA(np.float64), MinibatchCKA(np.float64, backend="torch")
    acc_np.update(a, b)
    acc_t.update([torch.from_numpy(x) for x in a], [torch.from_numpy(x) for x in b])
    np.testing.assert_allclose(acc_t.compute(), acc_np.compute(), atol=1e-12)
    g = BatchGrams.from_layers([torch.from_numpy(x) for x in a], backend="torch")
    assert isinstance(g.grams, torch.Tensor) and g.grams.dtype == torch.float32
    np.testing.assert_allclose(g.self_hsic, BatchGrams.from_layers(a).self_hsic, rtol=1e-5)


def test_torch_backend_batches_layers_of_one_width_and_matches_the_reference():
    """Layers of equal width share one batched product: each must still get its own Gram."""
    rng = np.random.default_rng(6)
    batches_a = [relu_layers(rng, 24, [(3, 4, 4), (5,), (48,), (6, 8)]) for _ in range(3)]  # three of width 48, not adjacent
    batches_b = [relu_layers(rng, 24, [(5,), (5,), (9,)]) for _ in range(3)]
    batches_b[1][1][:] = 1.0  # constant in one batch only: still defined
    acc = MinibatchCKA(backend="torch")
    for a, b in zip(batches_a, batches_b):
        acc.update([torch.from_numpy(x) for x in a], [torch.from_numpy(x) for x in b])
    np.testing.assert_allclose(acc.compute(), minibatch_cka(batches_a, batches_b), atol=TOL32, rtol=0)
    g = BatchGrams.from_layers([torch.from_numpy(x) for x in batches_b[1]], backend="torch")
    assert g.nonconstant.tolist() == [True, False, True]
    for x, row in zip(batches_a[0], BatchGrams.from_layers([torch.from_numpy(x) for x in batches_a[0]], backend="torch").grams):
        np.testing.assert_allclose(gram_matrix(row, 24).numpy(), u_centred_gram(x.astype(np.float64), np.float64), atol=1e-4)


def test_compare_stores_on_a_torch_device_matches_the_numpy_engine(stores):
    paths, _ = stores
    pairs = [("m0", "m1"), ("m2", "m2")]
    numpy_run = compare_stores(paths, pairs, batch_size=8, passes=2, threads=2, layer_block=2, progress=False)
    for cache_mb in (1024, 0):  # the layers kept on the device / read minibatch by minibatch
        torch_run = compare_stores(paths, pairs, batch_size=8, passes=2, threads=2, layer_block=2, progress=False, device="cpu", cache_mb=cache_mb)
        for pair in pairs:
            np.testing.assert_allclose(torch_run[pair]["cka"].values, numpy_run[pair]["cka"].values, atol=TOL32, rtol=0)
            assert torch_run[pair].attrs["device"] == "cpu" and numpy_run[pair].attrs["device"] == "cpu (numpy)"


def test_compare_stores_says_when_the_device_is_not_there(stores):
    paths, _ = stores
    from layersim.errors import LayersimError

    with pytest.raises(LayersimError, match=r"'cuda:7' was asked for but this job sees \d+ CUDA device"):
        compare_stores(paths, [("m0", "m1")], batch_size=8, passes=1, progress=False, device="cuda:7")
    with pytest.raises(LayersimError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        compare_stores(paths, [("m0", "m1")], batch_size=8, passes=1, progress=False, device="gpu")


def test_layer_blocks_balance_cost_and_cover_every_layer():
    sizes = [16384] * 8 + [8192] * 8 + [4096] * 8
    blocks = balanced_blocks(sizes, block=16, min_blocks=2)
    assert sorted(i for b in blocks for i in b) == list(range(24))
    loads = [sum(sizes[i] for i in b) for b in blocks]
    assert max(loads) / min(loads) < 1.1 and all(len(b) <= 16 for b in blocks)
    assert balanced_blocks([5, 1], block=16) == [[0, 1]]


def test_torch_grams_summed_over_feature_slices_equal_whole_grams(monkeypatch):
    """On a GPU a Gram is summed over slices of the features (the product then fills the
    chip); forced here on the CPU: the same results as one product per layer."""
    rng = np.random.default_rng(8)
    layers = relu_layers(rng, 16, [(4, 6, 6), (4, 6, 6), (35,), (7,)])
    whole = BatchGrams.from_layers([torch.from_numpy(x) for x in layers], backend="torch")
    monkeypatch.setattr(layersim.engine.grams, "_feature_parts", lambda p, device: next(d for d in (4, 3, 2, 1) if p % d == 0))
    sliced = BatchGrams.from_layers([torch.from_numpy(x) for x in layers], backend="torch")
    np.testing.assert_allclose(sliced.grams.numpy(), whole.grams.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(sliced.self_hsic, whole.self_hsic, rtol=1e-5)
    assert sliced.nonconstant.all()
    for x, row in zip(layers, sliced.grams):
        np.testing.assert_allclose(gram_matrix(row, 16).numpy(), u_centred_gram(x.astype(np.float64), np.float64), atol=1e-4)


@pytest.mark.parametrize("listening", [True, False])
def test_a_scheduler_that_does_not_answer_is_one_error_within_the_timeout(stores, listening):
    """A listener that never answers, or a refused port: one EstimatorError naming the address,
    after about the configured timeout (not a hang, not a raw CommClosedError)."""
    import socket
    import time

    from layersim.engine import EstimatorError

    paths, _ = stores
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if listening:
        sock.listen(8)  # accepts the connection (backlog) and never says a word
    else:
        sock.close()  # nothing listens: refused
    start = time.monotonic()
    try:
        with pytest.raises(EstimatorError, match=rf"Dask scheduler at tcp://127.0.0.1:{port} within 2 s"):
            compare_stores(paths, [("m0", "m1")], batch_size=8, passes=1, scheduler_address=f"tcp://127.0.0.1:{port}", scheduler_timeout=2, progress=False)
    finally:
        sock.close()
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("kernel", ["syrk", "gemm", "blocked4"])
def test_a_gram_store_records_its_kernel_and_matches_the_reference(stores, tmp_path, kernel):
    paths, data = stores
    grams = {m: str(write_gram_store(paths[m], tmp_path / f"{m}.zarr", batch_size=8, passes=2, threads=1, gram_kernel=kernel, progress=False)) for m in ("m0", "m2")}
    assert GramStore(grams["m0"]).attrs["gram_kernel"] == kernel
    result = compare_gram_stores(grams, [("m0", "m2")], progress=False)[("m0", "m2")]
    np.testing.assert_allclose(result["cka"].values, in_memory(data, "m0", "m2", 8, 2).compute(), atol=TOL32)


def test_an_unknown_gram_kernel_is_one_error_before_any_work(stores, tmp_path):
    paths, _ = stores
    with pytest.raises(engine_stores.EstimatorError, match="unknown Gram kernel 'fast': use 'auto' .* or one of 'syrk'"):
        write_gram_store(paths["m0"], tmp_path / "g.zarr", batch_size=8, passes=1, gram_kernel="fast", progress=False)
    assert not list(tmp_path.iterdir())
    with pytest.raises(engine_stores.EstimatorError, match="unknown Gram kernel 'fast'"):
        compare_stores(paths, [("m0", "m1")], batch_size=8, passes=1, gram_kernel="fast", progress=False)
