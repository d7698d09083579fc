"""Block-structure probes of Nguyen, Raghu & Kornblith (2021, Sec. 4) (method: docs/papers.md):
the first principal component's share of variance per layer of an activation store,
share₁ = λ₁ / Σᵢ λᵢ of the layer's flattened, column-centred activations ``X (n, p)``
(:func:`pc_shares`), and the block structure of a self-similarity matrix (:func:`largest_block`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError
from layersim.io import read_comments, read_csv, write_csv
from layersim.store import ActivationStore


@dataclass(frozen=True)
class PCShare:
    """First-PC share of one layer: ``share = top / total`` (NaN for a constant layer)."""

    layer: str
    n_features: int
    share: float
    top: float
    total: float
    method: str


def first_pc_share(read: Callable[[slice], np.ndarray], n: int, p: int, *, block_rows: int = 256, max_gram_features: int = 2048, oversamples: int = 10, n_iter: int = 7, seed: int = 0) -> tuple[float, float, str]:
    """λ₁ and Σλ of the centred rows of an ``(n, p)`` matrix read block by block.

    ``read(slice)`` returns the rows in that slice. Up to ``max_gram_features`` features the
    exact ``p × p`` scatter matrix about the first block's mean (a well-conditioned subtraction
    of the mean's outer product) is used, or, with fewer samples than features, the ``n × n``
    Gram matrix of the centred rows (the same nonzero eigenvalues). Beyond ``max_gram_features``
    the randomised subspace iteration (Halko et al. 2011, Alg. 4.4; ``oversamples`` extra columns,
    ``n_iter`` power iterations, a Gaussian start seeded by ``seed``). Returns
    ``(top, total, method)``: the largest eigenvalue of ``X_cᵀX_c``, its trace ``‖X_c‖²_F``
    (exact on every route), and ``"exact"`` or ``"randomized"``.
    """
    if block_rows < 1:
        raise LayersimError(f"block_rows must be at least 1, got {block_rows}")
    if n < 2:
        raise LayersimError(f"a principal component needs at least 2 samples, got {n}")
    blocks = [slice(lo, min(n, lo + block_rows)) for lo in range(0, n, block_rows)]
    if n < p <= max_gram_features:  # X_c X_cᵀ: at most max_gram_features² values, like the scatter
        x = np.concatenate([np.asarray(read(rows), dtype=np.float64).reshape(-1, p) for rows in blocks])
        x -= x.mean(axis=0)
        top = float(np.linalg.eigvalsh(x @ x.T)[-1])
        return max(top, 0.0), float(np.einsum("ij,ij->", x, x)), "exact"
    shift = np.asarray(read(blocks[0]), dtype=np.float64).mean(axis=0)
    total_sum = np.zeros(p)
    if p <= max_gram_features:
        scatter = np.zeros((p, p))
        for rows in blocks:
            x = np.asarray(read(rows), dtype=np.float64) - shift
            scatter += x.T @ x
            total_sum += x.sum(axis=0)
        scatter -= np.outer(total_sum, total_sum) / n
        top = float(np.linalg.eigvalsh(scatter)[-1]) if p else 0.0
        return max(top, 0.0), float(max(np.trace(scatter), 0.0)), "exact"
    sq = 0.0
    for rows in blocks:
        x = np.asarray(read(rows), dtype=np.float64) - shift
        total_sum += x.sum(axis=0)
        sq += float(np.einsum("ij,ij->", x, x))
    mean = shift + total_sum / n  # X_c = X − 1 meanᵀ, applied block by block below
    total = max(sq - float(total_sum @ total_sum) / n, 0.0)

    def times(m: np.ndarray) -> np.ndarray:  # X_c @ m, (n, k)
        return np.concatenate([(np.asarray(read(rows), dtype=np.float64) - mean) @ m for rows in blocks])

    def rtimes(q: np.ndarray) -> np.ndarray:  # X_cᵀ @ q, (p, k)
        out = np.zeros((p, q.shape[1]))
        for rows in blocks:
            out += (np.asarray(read(rows), dtype=np.float64) - mean).T @ q[rows]
        return out

    k = min(n, p, 1 + oversamples)
    q, _ = np.linalg.qr(times(np.random.default_rng(seed).standard_normal((p, k))))
    for _ in range(n_iter):
        q, _ = np.linalg.qr(times(rtimes(q)))
    s = np.linalg.svd(rtimes(q).T, compute_uv=False)
    return float(s[0] ** 2), total, "randomized"


def pc_shares(path: str | os.PathLike, *, block_rows: int = 256, max_gram_features: int = 2048, oversamples: int = 10, n_iter: int = 7) -> list[PCShare]:
    """First-PC share of variance of every layer of an activation store, by
    :func:`first_pc_share`; NaN for a layer whose activations are constant over the samples."""
    store = ActivationStore(path)
    out = []
    for layer in store.layers:
        p = int(np.prod(store.feature_shape(layer)))
        top, total, method = first_pc_share(lambda rows, layer=layer: store.read(layer, rows), len(store), p, block_rows=block_rows, max_gram_features=max_gram_features, oversamples=oversamples, n_iter=n_iter)
        share = min(top / total, 1.0) if total > 0 else float("nan")
        out.append(PCShare(layer, p, share, top, total, method))
    return out


COLUMNS = ("position", "layer", "n_features", "pc1_share", "pc1_variance", "total_variance", "method")


def write_pc_shares(shares: list[PCShare], path: str | os.PathLike, *, attrs: dict | None = None) -> None:
    """Write per-layer shares as CSV (one row a layer, forward order; ``attrs`` as ``# k: v`` lines)."""
    rows = [dict(zip(COLUMNS, (i, s.layer, s.n_features, s.share, s.top, s.total, s.method))) for i, s in enumerate(shares)]
    write_csv(rows, path, [f"{key}: {value}" for key, value in (attrs or {}).items()], float_format="", lineterminator="\r\n")


def read_pc_shares(path: str | os.PathLike):
    """The CSV of :func:`write_pc_shares` as an ``xarray.Dataset`` with a ``layer`` coordinate
    (variables ``pc1_share``, ``pc1_variance``, ``total_variance``, ``n_features``)."""
    import xarray as xr

    rows = read_csv(path)
    columns = {"pc1_share": float, "pc1_variance": float, "total_variance": float, "n_features": int, "method": str}
    return xr.Dataset(
        {name: ("layer", np.array([kind(r[name]) for r in rows])) for name, kind in columns.items()},
        coords={"layer": [str(r["layer"]) for r in rows]},
        attrs=read_comments(path),
    )


@dataclass(frozen=True)
class Block:
    """The largest block of a self-similarity matrix: layers ``start..stop-1`` (positions in the
    layers considered), ``size = stop − start``, ``fraction = size / n_layers``. No block:
    ``start = stop = size = 0``."""

    start: int
    stop: int
    size: int
    n_layers: int
    fraction: float


PC1_SHARE_THRESHOLD = 0.5
"""Default share₁ a layer of a block must exceed: its first principal component carries more
variance than all the others together."""


def largest_block(cka: np.ndarray, pc1_share: np.ndarray, *, cka_threshold: float = 0.9, pc1_threshold: float = PC1_SHARE_THRESHOLD, min_size: int = 2) -> Block:
    """Nguyen et al. (2021)'s block structure (docs/papers.md, Block structure).

    Over the layers considered (rows/columns of the square self-similarity matrix ``cka`` and the
    entries of ``pc1_share``, in forward order), the largest ``j − i ≥ min_size`` such that
    ``pc1_share[a] > pc1_threshold`` for every ``i ≤ a < j`` and ``cka[a, b] > cka_threshold`` for
    every ``i ≤ a, b < j``: the largest all-bright square on the heatmap's diagonal whose layers
    are each dominated by their first principal component. Ties go to the earliest run;
    NaN entries (undefined layers) never exceed a threshold; with no such run the block is empty
    (size 0).

    >>> c = np.array([[1, .95, .2, .1], [.95, 1, .95, .92], [.2, .95, 1, .97], [.1, .92, .97, 1]])
    >>> largest_block(c, np.array([.2, .8, .9, .85]))
    Block(start=1, stop=4, size=3, n_layers=4, fraction=0.75)
    >>> largest_block(c, np.array([.2, .2, .3, .2])).size
    0
    """
    c = np.asarray(cka, dtype=float)
    share = np.asarray(pc1_share, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise LayersimError(f"a self-similarity matrix must be square, got shape {c.shape}")
    n = c.shape[0]
    if share.shape != (n,):
        raise LayersimError(f"the PC1 shares must have one entry per layer of the {n}×{n} self-similarity matrix, got shape {share.shape}")
    high = np.nan_to_num(c, nan=-np.inf) > cka_threshold
    high &= high.T
    np.fill_diagonal(high, True)
    dominated = np.nan_to_num(share, nan=-np.inf) > pc1_threshold
    best = (0, 0)
    for i in range(n):
        if not dominated[i]:
            continue
        j = i + 1
        while j < n and dominated[j] and high[j, i : j + 1].all():  # the new layer j with every layer of the run
            j += 1
        if j - i >= max(min_size, 1) and j - i > best[1] - best[0]:
            best = (i, j)
    size = best[1] - best[0]
    return Block(best[0], best[1], size, n, size / n if n else float("nan"))


def largest_high_cka_run(cka: np.ndarray, threshold: float = 0.9) -> Block:
    """The longest run of consecutive layers whose pairwise CKA all exceed ``threshold`` (ties to
    the earliest; a lone layer is a run of 1): :func:`largest_block` without the PC1 condition."""
    c = np.asarray(cka, dtype=float)
    return largest_block(c, np.ones(c.shape[:1]), cka_threshold=threshold, pc1_threshold=0.0, min_size=1)


