"""Layer identification (Kornblith et al. 2019, Table 2): the new indexes against float64
references written from their formulas, the fast all-pairs path against the direct functions, and
the accuracy count."""

import numpy as np
import pytest

from layersim.experiments.kornblith import (
    IDENTIFICATION_METRICS,
    RBF_THRESHOLDS,
    identification_accuracy,
    layer_features,
    pair_matrices,
    similarity_tensor,
)
from layersim.metrics import METRICS, linear_hsic, svcca
from layersim.metrics import linear_regression as linear_regression_fit
from layersim.store import write_activations

pytestmark = pytest.mark.filterwarnings("ignore")


def svcca_r2(X, Y, variance=0.99):
    return svcca(X, Y, variance=variance).r2


def centred(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x - x.mean(axis=0)


def ref_linear_regression(X, Y):
    """R² of predicting X from Y by least squares with an intercept (np.linalg.lstsq)."""
    X = np.asarray(X, dtype=np.float64)
    design = np.column_stack([np.ones(len(Y)), Y])
    beta, *_ = np.linalg.lstsq(design, X, rcond=None)
    resid = X - design @ beta
    return 1.0 - np.sum(resid**2) / np.sum(centred(X) ** 2)


def ref_linear_hsic(X, Y):
    """tr(K H L H) / (n − 1)² with K = XXᵀ, L = YYᵀ and an explicit centring matrix."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(X @ X.T @ H @ Y @ Y.T @ H) / (n - 1) ** 2)


def ref_svcca_r2(X, Y, variance=0.99):
    """PCA each side to `variance` by eigendecomposition of the covariance, then the squared
    canonical correlations as eigenvalues of Σxx⁻¹ Σxy Σyy⁻¹ Σyx; mean over min(kx, ky)."""
    def reduce(Z):
        Zc = centred(Z)
        w, V = np.linalg.eigh(Zc.T @ Zc)
        w, V = w[::-1], V[:, ::-1]
        k = int(np.searchsorted(np.cumsum(w) / w.sum(), variance - 1e-12)) + 1
        return Zc @ V[:, :k]

    a, b = reduce(X), reduce(Y)
    sxx, syy, sxy = a.T @ a, b.T @ b, a.T @ b
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    rho2 = np.sort(np.clip(np.real(np.linalg.eigvals(m)), 0, 1))[::-1][: min(a.shape[1], b.shape[1])]
    return float(np.mean(rho2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(80, 5, 7), (60, 12, 3), (40, 9, 30)])
def test_new_indexes_match_float64_references(seed, shape):
    n, p, q = shape
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.linspace(1, 4, p) + 3.0
    Y = X[:, : min(p, q)] @ rng.normal(size=(min(p, q), q)) + rng.normal(size=(n, q))
    assert linear_regression_fit(X, Y) == pytest.approx(ref_linear_regression(X, Y), abs=1e-8)
    assert linear_hsic(X, Y) == pytest.approx(ref_linear_hsic(X, Y), rel=1e-8)
    if p + q < n - 1:  # the covariance reference needs the sample space to fit both sides
        assert svcca_r2(X, Y) == pytest.approx(ref_svcca_r2(X, Y), abs=1e-8)
        assert svcca_r2(X, Y, variance=1.0) == pytest.approx(ref_svcca_r2(X, Y, 1.0), abs=1e-8)


def test_index_properties():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_regression_fit(X, X @ rng.normal(size=(6, 6)) + 2) == pytest.approx(1.0)  # invertible map of Y
    assert linear_regression_fit(X, rng.normal(size=(50, 60))) == pytest.approx(1.0)  # Y spans everything
    assert svcca_r2(X, 3 * X @ Q + 1) == pytest.approx(1.0)
    assert linear_hsic(X @ Q, X) == pytest.approx(linear_hsic(X, X))
    assert linear_hsic(2 * X, X) == pytest.approx(4 * linear_hsic(X, X))  # unnormalised: ‖Yᵀ(2X)‖² = 4‖YᵀX‖²


def test_fast_all_pairs_path_matches_direct_functions():
    rng = np.random.default_rng(4)
    n = 40
    A = [rng.normal(size=(n, p)) for p in (4, 15, 60)]
    B = [A[0] @ rng.normal(size=(4, 6)) + 0.3 * rng.normal(size=(n, 6)), rng.normal(size=(n, 2, 3, 3)), A[2][:, :50] + 0.1 * rng.normal(size=(n, 50))]
    metrics = list(IDENTIFICATION_METRICS)
    rbf = {m: t for m, t in RBF_THRESHOLDS.items()}
    ab, ba = pair_matrices([layer_features(x, rbf=rbf) for x in A], [layer_features(y, rbf=rbf) for y in B], metrics)
    for m in metrics:
        f = METRICS[m]
        for i, x in enumerate(A):
            for j, y in enumerate(B):
                assert ab[m][i, j] == pytest.approx(f(x, y), abs=1e-8, rel=1e-8), (m, i, j)
                assert ba[m][j, i] == pytest.approx(f(y, x), abs=1e-8, rel=1e-8), (m, j, i)


def test_constant_layer_is_undefined_not_fatal():
    rng = np.random.default_rng(5)
    feats = [layer_features(rng.normal(size=(20, 3))), layer_features(np.ones((20, 4)))]
    ab, _ = pair_matrices(feats, feats, ["linear_cka", "cca_mean_rho"])
    assert np.isnan(ab["linear_cka"][0, 1]) and np.isnan(ab["cca_mean_rho"][1, 1])
    assert ab["linear_cka"][0, 0] == pytest.approx(1.0)


def _network(rng, base, noise):
    """Three layers that are noisy, rotated copies of shared 'true' layers."""
    out = {}
    for k, z in enumerate(base):
        Q, _ = np.linalg.qr(rng.normal(size=(z.shape[1], z.shape[1])))
        out[f"l{k}.relu"] = (z @ Q + noise * rng.normal(size=z.shape)).astype(np.float32)
    out["logits"] = rng.normal(size=(len(base[0]), 3)).astype(np.float32)
    return out


def test_similarity_tensor_and_accuracy(tmp_path):
    rng = np.random.default_rng(6)
    n = 60
    base = [rng.normal(size=(n, 5)), rng.normal(size=(n, 8)), rng.normal(size=(n, 4))]
    paths = {}
    for s in range(3):
        layers = _network(rng, base, 0.1)
        paths[f"net{s}"] = str(write_activations(tmp_path / f"net{s}.zarr", [layers], sample_id=np.arange(n), labels=np.zeros(n), attrs={}))
    sim = similarity_tensor(paths, layers=r"\.relu$", max_samples=50)
    assert sim["similarity"].dims == ("metric", "network_a", "network_b", "layer_a", "layer_b")
    assert list(sim["layer_a"].values) == ["l0.relu", "l1.relu", "l2.relu"] and sim.attrs["n_samples"] == 50
    assert np.isnan(sim["similarity"].sel(network_a="net0", network_b="net0")).all()
    rows = {r["metric"]: r for r in identification_accuracy(sim)}
    assert list(rows) == list(IDENTIFICATION_METRICS)
    for r in rows.values():
        assert 0.0 <= r["accuracy"] <= 100.0 and r["n_trials"] == 3 * 2 * 3
    assert rows["linear_cka"]["accuracy"] == pytest.approx(100.0)  # independent layers, small noise


def test_accuracy_counts_ties_fractionally():
    import xarray as xr

    values = np.full((1, 2, 2, 2, 2), np.nan)
    values[0, 0, 1] = [[1.0, 1.0], [0.2, 0.9]]  # row 0: tie (½), row 1: right
    values[0, 1, 0] = [[0.1, 0.9], [np.nan, np.nan]]  # row 0: wrong, row 1: undefined
    sim = xr.Dataset({"similarity": (("metric", "network_a", "network_b", "layer_a", "layer_b"), values)}, coords={"metric": ["linear_cka"], "network_a": ["a", "b"], "network_b": ["a", "b"]})
    (row,) = identification_accuracy(sim)
    assert row["accuracy"] == pytest.approx(100 * 1.5 / 4)
    assert (row["n_tied"], row["n_undefined"], row["n_trials"]) == (1, 1, 4)
