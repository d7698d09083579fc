"""First-PC share per layer (layersim.experiments.nguyen), read batch-wise, against numpy's exact SVD
(the block-structure measure: test_block_structure.py)."""

import numpy as np
import pytest

from layersim.experiments.nguyen import first_pc_share, pc_shares, read_pc_shares, write_pc_shares
from layersim.store import write_activations


def exact_share(x: np.ndarray) -> float:
    """Reference: squared singular values of the centred matrix (float64 SVD)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    return float(s[0] ** 2 / np.sum(s**2))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 150
    data = {
        "small": rng.normal(size=(n, 6)) * np.array([5, 2, 1, 1, 0.5, 0.1]) + 100.0,  # large offset
        "conv": rng.normal(size=(n, 4, 3, 3)),
        "wide": rng.normal(size=(n, 40)) @ rng.normal(size=(40, 400)) * 0.1 + rng.normal(size=(n, 1)) * np.linspace(1, 3, 400),
        "logits": rng.normal(size=(n, 10)),
    }
    batches = [{k: v[lo : lo + 32].astype(np.float32) for k, v in data.items()} for lo in range(0, n, 32)]
    path = tmp_path_factory.mktemp("pca") / "m.zarr"
    write_activations(path, batches, sample_id=np.arange(n), labels=np.zeros(n), attrs={}, shard_chunks=2)
    return path, {k: v.astype(np.float32) for k, v in data.items()}


@pytest.mark.parametrize("max_gram_features", [10_000, 1])  # the exact scatter path, the randomised path
@pytest.mark.parametrize("block_rows", [7, 64, 1000])
def test_pc_share_matches_exact_svd(store, max_gram_features, block_rows):
    path, data = store
    shares = {s.layer: s for s in pc_shares(path, block_rows=block_rows, max_gram_features=max_gram_features)}
    assert list(shares) == ["small", "conv", "wide", "logits"]
    for layer, x in data.items():
        got = shares[layer]
        assert got.method == ("exact" if got.n_features <= max_gram_features else "randomized")
        assert 0.0 <= got.share <= 1.0
        # exact path: to rounding; randomised: subspace iteration converges with the spectral
        # gap, so flat spectra (Gaussian noise) get 1e-3, a dominant direction 1e-6
        rel = 1e-9 if got.method == "exact" else (1e-6 if layer == "wide" else 1e-3)
        assert got.share == pytest.approx(exact_share(x), rel=rel, abs=1e-12)
        xc = x.astype(np.float64).reshape(len(x), -1)
        assert got.total == pytest.approx(np.sum((xc - xc.mean(0)) ** 2), rel=1e-9)


def test_csv_round_trip_has_a_layer_coordinate(store, tmp_path):
    path, data = store
    shares = pc_shares(path)
    write_pc_shares(shares, tmp_path / "s.csv", attrs={"store": "m"})
    ds = read_pc_shares(tmp_path / "s.csv")
    assert list(ds["layer"].values) == list(data) and ds.attrs["store"] == "m"
    np.testing.assert_allclose(ds["pc1_share"].sel(layer="conv").item(), exact_share(data["conv"]), rtol=1e-6)


def test_constant_layer_has_no_share():
    x = np.ones((20, 3))
    top, total, _ = first_pc_share(lambda rows: x[rows], 20, 3)
    assert top == pytest.approx(0.0) and total == pytest.approx(0.0)


def test_rank_one_layer_has_share_one():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 1)) @ rng.normal(size=(1, 30))
    top, total, _ = first_pc_share(lambda rows: x[rows], 50, 30, block_rows=9, max_gram_features=5)
    assert top / total == pytest.approx(1.0, abs=1e-9)
