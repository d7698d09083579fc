"""Ding, Denain & Steinhardt (2021), *Grounding representation similarity with statistical
testing*: does a metric's distance between two representations track the difference in their
linear-probe accuracy? Layer depth / seeds (specificity, :func:`depth_benchmark`) and deletion
of the top principal components (sensitivity, :func:`pc_deletion_benchmark`); docs/papers.md.
"""

from __future__ import annotations

import itertools

import numpy as np

from layersim.experiments.common import spearman
from layersim.metrics import METRICS, linear_probe_accuracy, value_or_nan


def distance(metric: str, x, y) -> float:
    """:meth:`layersim.metrics.Metric.distance` of ``metric`` (a name of
    :data:`layersim.metrics.METRICS`); NaN where the metric is undefined for the inputs."""
    return value_or_nan(METRICS[metric].distance, x, y)[0]


def delete_top_pcs(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` with its top-``k`` principal components projected out (the mean kept)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if k == 0:
        return x
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    v = vt[:k].T
    return x - (x - mu) @ v @ v.T


def depth_benchmark(reps: dict[str, np.ndarray], labels, metrics) -> tuple[list[dict], list[dict]]:
    """``reps``: name → (n, p). Returns (pair rows, per-metric summary rows)."""
    names = list(reps)
    acc = {k: linear_probe_accuracy(v, labels) for k, v in reps.items()}
    pairs = []
    for a, b in itertools.combinations(names, 2):
        row = {"a": a, "b": b, "probe_a": acc[a], "probe_b": acc[b], "abs_probe_difference": abs(acc[a] - acc[b])}
        for metric in metrics:
            row[metric] = distance(metric, reps[a], reps[b]) if metric != "pwcca" else 0.5 * (distance(metric, reps[a], reps[b]) + distance(metric, reps[b], reps[a]))
        pairs.append(row)
    by_ref = [[r for r in pairs if ref in (r["a"], r["b"])] for ref in names]
    summary = []
    for metric in metrics:
        per_ref = [spearman([r[metric] for r in s], [r["abs_probe_difference"] for r in s]) for s in by_ref]
        summary.append({"benchmark": "layer_depth", "metric": metric, "spearman_rho_mean_over_references": float(np.nanmean(per_ref)), "spearman_rho_all_pairs": spearman([r[metric] for r in pairs], [r["abs_probe_difference"] for r in pairs]), "n_representations": len(names), "n_pairs": len(pairs)})
    return pairs, summary


def pc_deletion_benchmark(reps: dict[str, np.ndarray], labels, metrics, ks) -> tuple[list[dict], list[dict]]:
    """``reps``: name (one layer of one seed) → (n, p). Distance to the original vs accuracy drop."""
    rows = []
    for name, x in reps.items():
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        base = linear_probe_accuracy(x, labels)
        for k in ks:
            if k >= min(x.shape) - 1:
                continue
            y = delete_top_pcs(x, k)
            row = {"representation": name, "k": k, "probe": linear_probe_accuracy(y, labels), "probe_original": base}
            row["probe_drop"] = base - row["probe"]
            rows.append(row | {metric: distance(metric, y, x) for metric in metrics})
    summary = [{"benchmark": "pc_deletion", "metric": metric, "spearman_rho_mean_over_references": float(np.nanmean([spearman([r[metric] for r in rows if r["representation"] == n], [r["probe_drop"] for r in rows if r["representation"] == n]) for n in reps])), "spearman_rho_all_pairs": spearman([r[metric] for r in rows], [r["probe_drop"] for r in rows]), "n_representations": len(reps), "n_pairs": len(rows)} for metric in metrics]
    return rows, summary
