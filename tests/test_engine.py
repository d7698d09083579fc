"""The minibatch CKA accumulator against the float64 reference of tests/reference.py."""

import numpy as np
import pytest
import torch

from layersim.engine import (
    BatchGrams,
    EstimatorError,
    MinibatchCKA,
    UndefinedLayerWarning,
    minibatch_rows,
    u_centred_gram,
)
from layersim.engine.grams import GRAM_KERNELS, _gram_numpy, gram_kernel_for, measure_gram_kernels
from layersim.metrics.kernel import u_centre
from reference import debiased_linear_cka, minibatch_cka, song_unbiased_hsic

TOL32 = 1e-5  # float32 Grams, float64 sums
SEEDS = [0, 1, 2]


def random_layers(rng, n, shapes):
    return [rng.normal(size=(n, *s)) for s in shapes]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [4, 9, 64])
def test_u_centred_hsic_equals_song_estimator(seed, n):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, 7)), rng.normal(size=(n, 3, 2)) ** 2
    ux = u_centred_gram(X, np.float64)
    uy = u_centred_gram(Y, np.float64)
    ours = float(np.sum(ux * uy)) / (n * (n - 3))
    K, L = X @ X.T, Y.reshape(n, -1) @ Y.reshape(n, -1).T
    assert ours == pytest.approx(song_unbiased_hsic(K, L), abs=1e-10, rel=1e-10)
    assert np.allclose(np.diag(ux), 0) and np.allclose(ux.sum(0), 0, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_one_batch_equals_debiased_linear_cka(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, 20))
    Y = np.tanh(X @ rng.normal(size=(20, 30))) + 0.5 * rng.normal(size=(50, 30))
    for dtype, tol in ((np.float64, 1e-10), (np.float32, TOL32)):
        acc = MinibatchCKA(dtype)
        acc.update([X], [Y])
        assert acc.compute()[0, 0] == pytest.approx(debiased_linear_cka(X, Y), abs=tol)


@pytest.mark.parametrize("seed", SEEDS)
def test_several_batches_sum_hsic_before_normalising(seed):
    rng = np.random.default_rng(seed)
    shapes_a = [(6,), (3, 2, 2), (5,)]
    batches_a = [random_layers(rng, 16, shapes_a) for _ in range(4)]
    batches_b = [[np.maximum(a[0][:, :4] + rng.normal(size=(16, 4)), 0), rng.normal(size=(16, 9))] for a in batches_a]
    acc = MinibatchCKA(np.float64)
    for a, b in zip(batches_a, batches_b):
        acc.update(a, b)
    np.testing.assert_allclose(acc.compute(), minibatch_cka(batches_a, batches_b), atol=1e-10)
    # the mean of per-batch CKAs is a different quantity: make sure we did not compute that
    per_batch = np.mean([minibatch_cka([a], [b]) for a, b in zip(batches_a, batches_b)], axis=0)
    assert not np.allclose(acc.compute(), per_batch, atol=1e-6)


def test_self_similarity_is_one_and_symmetric():
    rng = np.random.default_rng(0)
    layers = random_layers(rng, 32, [(5,), (8,), (2, 3)])
    acc = MinibatchCKA()
    acc.update(layers)
    cka = acc.compute()
    np.testing.assert_allclose(np.diag(cka), 1.0, atol=TOL32)
    np.testing.assert_allclose(cka, cka.T, atol=TOL32)


@pytest.mark.parametrize("seed", SEEDS)
def test_invariances(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 12))
    Y = X @ rng.normal(size=(12, 12)) + rng.normal(size=(40, 12))
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))

    def cka(a, b):
        acc = MinibatchCKA(np.float64)
        acc.update([a], [b])
        return acc.compute()[0, 0]

    base = cka(X, Y)
    assert cka(X @ Q, Y) == pytest.approx(base, abs=1e-10)  # orthogonal transform
    assert cka(3.7 * X, Y) == pytest.approx(base, abs=1e-10)  # isotropic scaling
    A = np.diag(np.linspace(0.1, 10, 12)) @ rng.normal(size=(12, 12))  # invertible, not orthogonal
    assert abs(np.linalg.det(A)) > 1e-6
    assert abs(cka(X @ A, Y) - base) > 1e-3


def test_merge_equals_single_accumulator():
    rng = np.random.default_rng(3)
    batches = [(random_layers(rng, 12, [(4,), (6,)]), random_layers(rng, 12, [(3,)])) for _ in range(5)]
    whole, left, right = MinibatchCKA(np.float64), MinibatchCKA(np.float64), MinibatchCKA(np.float64)
    for i, (a, b) in enumerate(batches):
        whole.update(a, b)
        (left if i < 2 else right).update(a, b)
    merged = MinibatchCKA(np.float64).merge(right).merge(left)
    np.testing.assert_allclose(merged.compute(), whole.compute(), atol=1e-12)
    assert merged.n_batches == 5


def test_torch_input_matches_numpy():
    rng = np.random.default_rng(4)
    a, b = random_layers(rng, 20, [(3, 4, 4), (10,)]), random_layers(rng, 20, [(7,)])
    acc_np, acc_t = MinibatchCKA(), MinibatchCKA()
    acc_np.update(a, b)
    acc_t.update([torch.from_numpy(x).float() for x in a], [torch.from_numpy(x).float() for x in b])
    np.testing.assert_allclose(acc_t.compute(), acc_np.compute(), atol=TOL32)


def test_too_small_batch_is_refused():
    acc = MinibatchCKA()
    with pytest.raises(EstimatorError, match="minibatch of 3 samples is too small.*at least 4"):
        acc.update([np.ones((3, 2))], [np.ones((3, 2))])
    with pytest.raises(EstimatorError, match="batch size 3 is too small"):
        minibatch_rows(100, batch_size=3)


def test_mismatched_samples_are_refused():
    acc = MinibatchCKA()
    with pytest.raises(EstimatorError, match="model a's minibatch has 8 samples and model b's 9"):
        acc.update([np.random.rand(8, 2)], [np.random.rand(9, 2)])
    with pytest.raises(EstimatorError, match="call update"):
        MinibatchCKA().compute()


def test_constant_layer_is_reported_and_nan():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 4))
    const = np.full((16, 3), 2.5)
    acc = MinibatchCKA(layer_names_a=["conv", "dead.relu"], layer_names_b=["fc"])
    acc.update([x, const], [x[:, :2]])
    with pytest.warns(UndefinedLayerWarning, match="dead.relu"):
        cka = acc.compute()
    assert np.isfinite(cka[0, 0]) and np.isnan(cka[1, 0])


def test_minibatch_rows_are_seeded_permutations_without_replacement():
    batches = minibatch_rows(10, batch_size=4, passes=3)
    assert len(batches) == 6  # 2 per pass, remainder of 2 dropped
    for p in range(3):
        rows = np.concatenate(batches[2 * p : 2 * p + 2])
        assert len(set(rows.tolist())) == 8  # no repeats within a pass
    assert [b.tolist() for b in minibatch_rows(10, 4, 3)] == [b.tolist() for b in batches]
    assert batches[0].tolist() != batches[2].tolist()


def test_grams_computed_once_per_layer_per_batch():
    rng = np.random.default_rng(6)
    layers = random_layers(rng, 10, [(4,), (5,), (6,)])
    grams = BatchGrams.from_layers(layers)
    assert grams.grams.shape == (3, 45)  # each Gram's entries above its diagonal
    np.testing.assert_allclose(grams.self_hsic, [song_unbiased_hsic(flat @ flat.T, flat @ flat.T) for flat in (x.reshape(10, -1) for x in layers)], rtol=1e-5)


# --- Gram kernels: each gives x xᵀ up to rounding; "auto" picks one by measurement -------------


@pytest.mark.parametrize("kernel", list(GRAM_KERNELS))
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("n, p", [(4, 3), (9, 5), (13, 1500), (38, 7), (37, 3000)])  # odd n, n not a multiple of 2 or 4
def test_each_gram_kernel_gives_the_float64_gram(kernel, dtype, tol, n, p):
    x = np.maximum(np.random.default_rng(n + p).normal(size=(n, p)) + 0.3, 0)  # ≥ 0, as after a ReLU
    x64 = x.astype(dtype).astype(np.float64)
    reference = x64 @ x64.T  # float64 of the same (rounded) inputs
    gram = GRAM_KERNELS[kernel](np.ascontiguousarray(x, dtype=dtype))
    assert gram.shape == (n, n) and gram.dtype == dtype
    # each entry a sum of p non-negative products: float rounding bounds its error by ~p·eps of it
    assert np.abs(gram - reference).max() <= tol * np.abs(reference).max()
    # through the engine: the U-centred Gram against u_centre of the float64 reference
    out = np.empty(n * (n - 1) // 2, dtype)  # the entries above the diagonal
    _gram_numpy(x, dtype, out, kernel)
    expected = u_centre(reference.copy())[np.triu_indices(n, 1)]
    assert np.abs(out - expected).max() <= 10 * tol * np.abs(reference).max()


def test_unknown_gram_kernel_is_one_error_naming_the_kernels():
    x = np.random.default_rng(0).normal(size=(8, 3))
    for call in (lambda: BatchGrams.from_layers([x], kernel="fastest"), lambda: MinibatchCKA(gram_kernel="fastest")):
        with pytest.raises(EstimatorError, match="unknown Gram kernel 'fastest'.*'auto'.*'syrk', 'gemm', 'blocked2', 'blocked4'"):
            call()


def test_gram_kernel_for_measures_once_on_one_blas_thread_and_restores_the_limits(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    seen = []
    for name, kernel in list(GRAM_KERNELS.items()):
        def timed_kernel(x, kernel=kernel):
            seen.append({t for _, t in blas_threads()})
            return kernel(x)

        monkeypatch.setitem(GRAM_KERNELS, name, timed_kernel)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        name = gram_kernel_for(29, np.float64)  # a (n, dtype) no other test measures
        assert blas_threads() == before
        calls = len(seen)
        assert gram_kernel_for(29, "float64") == name and len(seen) == calls  # cached per process
    assert name in GRAM_KERNELS
    assert calls > 0 and all(threads == {1} for threads in seen)
    seconds = measure_gram_kernels(16, np.float32, widths=(64, 256), repeats=1)
    assert set(seconds) == set(GRAM_KERNELS) and all(0 < s < np.inf for s in seconds.values())


@pytest.mark.parametrize("kernel", [*GRAM_KERNELS, "auto"])
@pytest.mark.parametrize("dtype, tol", [(np.float32, TOL32), (np.float64, 1e-10)])
def test_minibatch_cka_with_each_gram_kernel_matches_float64_reference(kernel, dtype, tol):
    rng = np.random.default_rng(7)
    batches_a = [[np.maximum(x, 0) for x in random_layers(rng, 37, [(3, 8, 8), (40,), (2, 5)])] for _ in range(2)]
    batches_b = [[a[0].reshape(37, -1)[:, :50] + rng.normal(size=(37, 50)), rng.normal(size=(37, 9))] for a in batches_a]
    for threads in (1, 2):
        acc = MinibatchCKA(dtype, threads=threads, gram_kernel=kernel)
        for a, b in zip(batches_a, batches_b):
            acc.update(a, b)
        np.testing.assert_allclose(acc.compute(), minibatch_cka(batches_a, batches_b), atol=tol)
