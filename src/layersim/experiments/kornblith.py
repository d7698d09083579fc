"""The layer-identification benchmark of Kornblith et al. (2019, Sec. 6.1 and Table 2).

An index identifies layer i of network A when the layer of network B most similar to A_i is i
(a tie among k layers earns 1/k). Trials, indexes and cost: docs/papers.md, Kornblith; every
per-layer quantity is computed once per network (:func:`layer_features`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import combinations, permutations

import numpy as np

from layersim.errors import LayersimError
from layersim.layers import select_layers
from layersim.metrics import METRICS, MetricInputError
from layersim.metrics._common import _as_matrix, _centre
from layersim.metrics.canonical import orthonormal_basis
from layersim.metrics.kernel import _h_centre, _rbf_gram
from layersim.parallel import single_blas_thread, thread_pool
from layersim.store import ActivationStore, check_comparable

log = logging.getLogger("layersim.experiments.kornblith")

IDENTIFICATION_METRICS: tuple[str, ...] = (
    "cca_mean_rho", "cca_r2", "svcca", "svcca_r2", "pwcca", "linear_regression", "linear_hsic",
    "linear_cka", "rbf_cka_0.2", "rbf_cka_0.4", "rbf_cka_0.8",
)
"""The indexes of Kornblith et al. (2019)'s Table 2, in the table's order (names of
:data:`layersim.metrics.METRICS`, whose labels are the table's)."""

RBF_THRESHOLDS = {name: METRICS[name].function.keywords["threshold"] for name in IDENTIFICATION_METRICS if name.startswith("rbf_cka_")}

# Kornblith et al. (2019), Table 2: accuracy (%) of identifying corresponding layers of 10 Tiny-10
# CNNs trained on CIFAR-10 from different initialisations (logits excluded).
PAPER_ACCURACY: dict[str, float] = {
    "cca_mean_rho": 1.4,
    "cca_r2": 10.6,
    "svcca": 9.9,
    "svcca_r2": 15.1,
    "pwcca": 11.1,
    "linear_regression": 45.4,
    "linear_hsic": 22.2,
    "linear_cka": 99.3,
    "rbf_cka_0.2": 80.6,
    "rbf_cka_0.4": 99.1,
    "rbf_cka_0.8": 99.3,
}

_TIE_RTOL = 1e-9


@dataclass
class LayerFeatures:
    """Everything the indexes need from one layer ``X (n, p)``, computed once.

    ``cca``/``svcca``: orthonormal bases (n, k) as the CCA family chooses them; ``cca_m``:
    ``ccaᵀ X_c`` (k, p) for PWCCA's weights; ``total``: ‖X_c‖²_F; ``grams``: flattened n × n
    matrices — ``lin`` (X_c X_cᵀ), ``proj`` (the projector onto X_c's column space) and, per RBF
    index, the centred RBF Gram scaled to unit Frobenius norm. ``error`` is set (and everything
    else empty) when the layer is constant.
    """

    n: int
    cca: np.ndarray | None = None
    svcca: np.ndarray | None = None
    cca_m: np.ndarray | None = None
    total: float = float("nan")
    grams: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def layer_features(X, *, rbf: dict[str, float] | None = None, variance: float = 0.99) -> LayerFeatures:
    """Per-layer quantities of :class:`LayerFeatures` for ``X (n, p, ...)`` (float64)."""
    X = _as_matrix(X, "X")
    n = X.shape[0]
    try:
        xc = _centre(X, "X")
        svd = np.linalg.svd(xc, full_matrices=False)[:2]
        cca, _ = orthonormal_basis(xc, max_dims=(n - 1) // 2, svd=svd)
        full, _ = orthonormal_basis(xc, svd=svd)
        svcca, _ = orthonormal_basis(xc, variance=variance, max_dims=(n - 1) // 2, svd=svd)
        grams = {"lin": (xc @ xc.T).ravel(), "proj": (full @ full.T).ravel()}
        for name, t in (rbf or {}).items():
            k = _h_centre(_rbf_gram(X, t, "X"))
            grams[name] = (k / np.linalg.norm(k)).ravel()
        return LayerFeatures(n, cca, svcca, cca.T @ xc, float(np.sum(xc**2)), grams)
    except MetricInputError as err:  # a constant layer: every index is undefined
        return LayerFeatures(n, error=str(err))


def _pwcca(rho: np.ndarray, vectors: np.ndarray, m: np.ndarray) -> float:
    """Σ wᵢρᵢ with weights ∝ Σⱼ |⟨hᵢ, xⱼ⟩|, ``hᵢ = basis @ vectors[:, i]`` (so Hᵀ X_c = vectorsᵀ m)."""
    alpha = np.abs(vectors[:, : len(rho)].T @ m).sum(axis=1)
    return float((alpha / alpha.sum()) @ rho)


def pair_matrices(fa: list[LayerFeatures], fb: list[LayerFeatures], metrics: list[str]) -> tuple[dict, dict]:
    """Every index over every layer pair of two networks, both ways.

    Returns ``(ab, ba)``: metric → ``(La, Lb)`` matrix of s(A_i, B_j) and metric → ``(Lb, La)``
    of s(B_j, A_i) (they differ only for the asymmetric PWCCA and linear regression).
    """
    la, lb = len(fa), len(fb)
    ab = {m: np.full((la, lb), np.nan) for m in metrics}
    ba = {m: np.full((lb, la), np.nan) for m in metrics}
    mask = np.outer([f.error is None for f in fa], [f.error is None for f in fb])  # both layers defined
    n = fa[0].n
    # Gram-based indexes: one matrix product per kind of Gram over all layer pairs.
    def gram_stack(feats, kind):
        return np.stack([f.grams[kind] if f.error is None else np.zeros(n * n) for f in feats])

    if any(m in metrics for m in ("linear_hsic", "linear_cka", "linear_regression")):
        lin_a, lin_b = gram_stack(fa, "lin"), gram_stack(fb, "lin")
        inner = lin_a @ lin_b.T
        if "linear_hsic" in metrics:
            ab["linear_hsic"] = np.where(mask, inner / (n - 1) ** 2, np.nan)
        if "linear_cka" in metrics:
            norms_a, norms_b = np.linalg.norm(lin_a, axis=1), np.linalg.norm(lin_b, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ab["linear_cka"] = np.where(mask, inner / np.outer(norms_a, norms_b), np.nan)
        if "linear_regression" in metrics:
            total_a = np.array([f.total for f in fa])
            total_b = np.array([f.total for f in fb])
            with np.errstate(invalid="ignore", divide="ignore"):
                ab["linear_regression"] = np.where(mask, (lin_a @ gram_stack(fb, "proj").T) / total_a[:, None], np.nan)
                ba["linear_regression"] = np.where(mask.T, (lin_b @ gram_stack(fa, "proj").T) / total_b[:, None], np.nan)
    for m in metrics:
        if m in RBF_THRESHOLDS:
            ab[m] = np.where(mask, gram_stack(fa, m) @ gram_stack(fb, m).T, np.nan)
    # CCA family: one SVD per layer pair (and one more for SVCCA) serves both directions.
    cca_metrics = {"cca_mean_rho", "cca_r2", "pwcca"} & set(metrics)
    sv_metrics = {"svcca", "svcca_r2"} & set(metrics)
    for i, x in enumerate(fa):
        for j, y in enumerate(fb):
            if x.error or y.error:
                continue
            means = {}  # mean ρ and mean ρ² of CCA and of SVCCA
            if cca_metrics:
                P, rho, Vt = np.linalg.svd(x.cca.T @ y.cca, full_matrices=False)
                rho = np.clip(rho, 0.0, 1.0)
                means.update(cca_mean_rho=rho.mean(), cca_r2=np.mean(rho**2))
                if "pwcca" in metrics:
                    ab["pwcca"][i, j] = _pwcca(rho, P, x.cca_m)
                    ba["pwcca"][j, i] = _pwcca(rho, Vt.T, y.cca_m)
            if sv_metrics:
                rho = np.clip(np.linalg.svd(x.svcca.T @ y.svcca, compute_uv=False), 0.0, 1.0)
                means.update(svcca=rho.mean(), svcca_r2=np.mean(rho**2))
            for m in (cca_metrics | sv_metrics) - {"pwcca"}:
                ab[m][i, j] = means[m]
    for m in metrics:
        if m not in ("pwcca", "linear_regression"):
            ba[m] = ab[m].T.copy()
    return ab, ba


def similarity_tensor(paths: dict[str, str], *, layers: str = r"\.relu$|^pool$", metrics: list[str] | None = None, max_samples: int | None = None, threads: int = 1):
    """Every index over every layer pair of every ordered pair of different networks.

    ``paths``: network name → activation store (the same samples and layers in every store);
    ``layers``: regex of the compared layers (``logits`` always excluded); ``metrics``: names in
    :data:`IDENTIFICATION_METRICS` (default all); ``max_samples``: the first N samples only;
    ``threads``: networks (then network pairs) processed at once, each with one BLAS thread.
    Returns an ``xarray.Dataset`` ``similarity (metric, network_a, network_b, layer_a, layer_b)``,
    NaN where ``network_a == network_b`` (not compared).
    """
    import xarray as xr

    metrics = list(metrics or IDENTIFICATION_METRICS)
    for m in metrics:
        if m not in IDENTIFICATION_METRICS:
            raise LayersimError(f"unknown identification index {m!r}; known: {', '.join(IDENTIFICATION_METRICS)}")
    names = list(paths)
    if len(names) < 2:
        raise LayersimError(f"layer identification needs at least 2 networks, got {len(names)}")
    stores = {k: ActivationStore(p) for k, p in paths.items()}
    first = stores[names[0]]
    for k in names[1:]:
        check_comparable(first, stores[k])
        if stores[k].layers != first.layers:
            raise LayersimError(f"networks {names[0]} and {k} have different layers; layer identification compares networks of one architecture")
    chosen = select_layers(first.layers, layers, what="identification layer pattern")
    rows = slice(0, max_samples)
    rbf = {m: RBF_THRESHOLDS[m] for m in metrics if m in RBF_THRESHOLDS}

    def network(k):
        start = time.perf_counter()
        feats = [layer_features(stores[k].read(l, rows), rbf=rbf) for l in chosen]
        log.info("features of %s (%d layers): %.1f s", k, len(chosen), time.perf_counter() - start)
        return feats

    def pair(ab):
        start = time.perf_counter()
        result = pair_matrices(features[names[ab[0]]], features[names[ab[1]]], metrics)
        log.info("pair %s × %s: %.1f s", names[ab[0]], names[ab[1]], time.perf_counter() - start)
        return result

    N, L = len(names), len(chosen)
    out = np.full((len(metrics), N, N, L, L), np.nan)
    pairs = list(combinations(range(N), 2))
    with single_blas_thread(), thread_pool(max(1, threads), "identification") as pool:
        features = dict(zip(names, pool.map(network, names)))
        for (a, b), (ab, ba) in zip(pairs, pool.map(pair, pairs)):
            for k, m in enumerate(metrics):
                out[k, a, b], out[k, b, a] = ab[m], ba[m]
    return xr.Dataset(
        {"similarity": (("metric", "network_a", "network_b", "layer_a", "layer_b"), out)},
        coords={"metric": metrics, "network_a": names, "network_b": names, "layer_a": chosen, "layer_b": chosen},
        attrs={"n_samples": features[names[0]][0].n, "layer_pattern": layers},
    )


def identification_accuracy(similarity) -> list[dict]:
    """Per index of the Dataset of :func:`similarity_tensor`: ``metric``, ``label``, ``accuracy``
    (in %, ties earn 1/k), ``n_trials``, ``n_tied`` (trials whose maximum was shared),
    ``n_undefined`` (trials with no defined value, counted wrong) and ``paper_accuracy``."""
    values = similarity["similarity"].values
    names = list(similarity["network_a"].values)
    out = []
    for k, metric in enumerate(similarity["metric"].values):
        credit, trials, tied, undefined = 0.0, 0, 0, 0
        for a, b in permutations(range(len(names)), 2):
            for i, row in enumerate(values[k, a, b]):
                trials += 1
                if not np.isfinite(row).any():
                    undefined += 1
                    continue
                best = np.nanmax(row)
                winners = np.nan_to_num(row, nan=-np.inf) >= best - _TIE_RTOL * abs(best)
                tied += int(winners.sum() > 1)
                if winners[i]:
                    credit += 1.0 / winners.sum()
        out.append({
            "metric": str(metric),
            "label": METRICS[str(metric)].label,
            "accuracy": 100.0 * credit / trials if trials else float("nan"),
            "n_trials": trials,
            "n_tied": tied,
            "n_undefined": undefined,
            "paper_accuracy": PAPER_ACCURACY[str(metric)],
        })
    return out

