"""Any metric of :mod:`layersim.metrics` over every layer pair of two activation stores,
and the functional measures of two stores' outputs.

Unlike minibatch CKA (:mod:`layersim.engine`), these metrics use all samples at once: each
layer's rows (the first ``max_samples`` of the evaluation split) are loaded whole, one layer
pair at a time per Dask thread.
"""

from __future__ import annotations

import numpy as np

from layersim.errors import LayersimError
from layersim.metrics import METRICS, accuracy_difference, confidence_rank_correlation, jsd, prediction_disagreement, value_or_nan
from layersim.metrics.functional import softmax
from layersim.parallel import single_blas_thread
from layersim.store import ActivationStore, check_comparable


def selected_layers(layers: list[str], stride: int) -> list[str]:
    """Every ``stride``-th layer, always keeping the last (the logits).

    >>> selected_layers(["a", "b", "c", "d", "logits"], 2)
    ['a', 'c', 'logits']
    """
    if stride < 1:
        raise LayersimError(f"layer stride must be at least 1, got {stride}")
    chosen = list(layers[::stride])
    if layers and chosen[-1] != layers[-1]:
        chosen.append(layers[-1])
    return chosen


def metric_matrix(path_a: str, path_b: str, metric: str, *, layer_stride: int = 1, max_samples: int | None = None, threads: int = 1, progress: bool = True):
    """One ``metric`` (a key of :data:`layersim.metrics.METRICS`) over every layer pair of two
    stores with the same ``sample_id``: every ``layer_stride``-th layer of each model (the logits
    always), the first ``max_samples`` rows (all if None).

    Returns an ``xarray.Dataset``: ``value (layer_a, layer_b)`` and attrs ``metric``, ``kind``
    (similarity/distance), ``undefined`` (the pairs whose value is NaN, with the reason), ...
    """
    import dask
    import xarray as xr

    from layersim.progress import DaskTqdm

    if metric not in METRICS:
        raise LayersimError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    store_a, store_b = ActivationStore(path_a), ActivationStore(path_b)
    check_comparable(store_a, store_b)
    rows = slice(0, max_samples)
    layers_a = selected_layers(store_a.layers, layer_stride)
    layers_b = selected_layers(store_b.layers, layer_stride)
    data_a = {l: dask.delayed(store_a.read, pure=True)(l, rows) for l in layers_a}
    data_b = {l: dask.delayed(store_b.read, pure=True)(l, rows) for l in layers_b}
    cells = [dask.delayed(value_or_nan, pure=True)(METRICS[metric], data_a[la], data_b[lb]) for la in layers_a for lb in layers_b]
    with single_blas_thread(), DaskTqdm(desc=metric, disable=not progress):
        (values,) = dask.compute(cells, scheduler="threads", num_workers=max(1, threads))
    matrix = np.array([v for v, _ in values]).reshape(len(layers_a), len(layers_b))
    undefined = sorted({f"{la} × {lb}: {why}" for (la, lb), (_, why) in zip(((a, b) for a in layers_a for b in layers_b), values) if why})
    n_used = len(store_a) if max_samples is None else min(max_samples, len(store_a))
    return xr.Dataset(
        {"value": (("layer_a", "layer_b"), matrix)},
        coords={"layer_a": layers_a, "layer_b": layers_b},
        attrs={"metric": metric, "kind": METRICS[metric].kind, "model_a": store_a.name, "model_b": store_b.name, "n_samples": n_used, "layer_stride": layer_stride, "undefined": undefined[:50], "n_undefined": int(np.isnan(matrix).sum())},
    )


def functional_similarity(path_a: str, path_b: str) -> dict:
    """Functional measures of two models from their stored logits and labels.

    Returns a dict with each model's accuracy, the absolute accuracy difference, the mean
    Jensen–Shannon divergence of their predictive distributions (bits), the fraction of samples
    on which their predictions disagree, and the Spearman rank correlation of their per-sample
    confidence in the true class.
    """
    store_a, store_b = ActivationStore(path_a), ActivationStore(path_b)
    check_comparable(store_a, store_b)
    p, q = softmax(store_a.read("logits")), softmax(store_b.read("logits"))
    labels = store_a.labels
    return {
        "model_a": store_a.name,
        "model_b": store_b.name,
        "n_samples": len(labels),
        "accuracy_a": float((p.argmax(1) == labels).mean()),
        "accuracy_b": float((q.argmax(1) == labels).mean()),
        "accuracy_difference": accuracy_difference(p, q, labels),
        "jsd_bits": jsd(p, q, base=2.0),
        "disagreement": prediction_disagreement(p, q),
        "confidence_rank_correlation": confidence_rank_correlation(p, q, labels),
    }
