"""Representation sets told apart by an SVM, and their t-SNE (thesis §3.1, Figures 3.1 and 3.2;
sets, labels, datasets and method: docs/papers.md, Representation sets).
"""

from __future__ import annotations

import numpy as np

from layersim.data import Dataset, DatasetError, Split, load_dataset
from layersim.errors import LayersimError

TRANSFORMS = {
    "none": lambda x: x,
    "invert": lambda x: 1.0 - x,  # dark digits on a light background
    "transpose": lambda x: x.transpose(0, 1, 3, 2),  # height ↔ width
    "rotate90": lambda x: np.rot90(x, k=1, axes=(2, 3)),  # a quarter turn anticlockwise
    "hflip": lambda x: x[..., ::-1],  # mirrored left–right
}
"""The pixel transforms of ``(N, C, H, W)`` images in ``[0, 1]``."""
UNTRAINED = "untrained"


class RepresentationSetError(LayersimError):
    """Representation sets that cannot be classified as configured."""


def transform_images(images: np.ndarray, transform: str) -> np.ndarray:
    """One of :data:`TRANSFORMS` applied to ``(N, C, H, W)`` images in ``[0, 1]`` (float32).

    Examples
    --------
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) / 4
    >>> transform_images(x, "transpose")[0, 0].tolist()
    [[0.0, 0.5], [0.25, 0.75]]
    >>> transform_images(x, "invert")[0, 0].tolist()
    [[1.0, 0.75], [0.5, 0.25]]
    """
    if transform not in TRANSFORMS:
        raise DatasetError(f"unknown dataset transform {transform!r}: expected one of {', '.join(TRANSFORMS)}")
    return np.ascontiguousarray(TRANSFORMS[transform](images), dtype=np.float32)


def _channels(images: np.ndarray, channels: int | None, where: str) -> np.ndarray:
    if channels is None or channels == images.shape[1]:
        return images
    if images.shape[1] != 1:
        raise DatasetError(f"{where}: channels {channels} asks to replicate the channels of {images.shape[1]}-channel images; only 1-channel (grey) images can be replicated")
    return np.ascontiguousarray(np.repeat(images, channels, axis=1))


def load_set_dataset(spec: dict, where: str = "dataset") -> Dataset:
    """A dataset of the experiment: ``{"source": <load_dataset config>, "transform": str,
    "channels": int | None}``, the transform and channel replication applied to both splits;
    ``where`` names the config entry in error messages.
    """
    source = load_dataset(dict(spec["source"]))
    transform = spec.get("transform", "none")
    channels = spec.get("channels")

    def convert(split: Split) -> Split:
        images = _channels(transform_images(split.images, transform), channels, where)
        return Split(images, split.labels, split.sample_id)

    name = source.name if transform == "none" else f"{source.name}[{transform}]"
    return Dataset(name, convert(source.train), convert(source.eval), source.num_classes)


def sample_rows(n_rows: int, n_samples: int | None, seed: int, where: str = "samples_per_set") -> np.ndarray:
    """Sorted positions of ``n_samples`` rows drawn without replacement (all rows if None)."""
    if n_samples is None:
        return np.arange(n_rows)
    if n_samples > n_rows:
        raise RepresentationSetError(f"{where} is {n_samples}, but the test split has only {n_rows} images; lower it (or null for all)")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=n_samples, replace=False))


def feature_layer(layers: list[str], layer: str) -> str:
    """The layer name ``layer`` stands for: ``last_block`` is the layer just before ``pool`` (the
    last residual block's output, the thesis' 'last convolutional layer'); anything else must be
    one of ``layers``."""
    if layer == "last_block":
        if "pool" not in layers or layers.index("pool") == 0:
            raise RepresentationSetError("layer 'last_block' is the layer before 'pool', but this model has no 'pool' layer; name a layer instead")
        return layers[layers.index("pool") - 1]
    if layer not in layers:
        raise RepresentationSetError(f"layer {layer!r} is not a layer of the model (its last layers: {', '.join(layers[-5:])})")
    return layer


def build_set_matrix(sets: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Representation sets (each ``{"label": str, "features": (n_i, p) array, ...}``) stacked into
    ``X (Σ n_i, p)`` float64, ``y (Σ n_i,)`` int64 (the index of each row's set) and the labels."""
    if len(sets) < 2:
        raise RepresentationSetError(f"need at least 2 representation sets to classify, got {len(sets)}")
    labels = [s["label"] for s in sets]
    if len(set(labels)) != len(labels):
        raise RepresentationSetError(f"representation set labels repeat: {labels}")
    widths = {s["label"]: s["features"].reshape(len(s["features"]), -1).shape[1] for s in sets}
    if len(set(widths.values())) > 1:
        raise RepresentationSetError(f"representation sets have different feature sizes {widths}; every test dataset must have the image shape the models were trained on")
    X = np.concatenate([np.asarray(s["features"], np.float64).reshape(len(s["features"]), -1) for s in sets])
    if not np.isfinite(X).all():
        bad = [s["label"] for s in sets if not np.isfinite(s["features"]).all()]
        raise RepresentationSetError(f"non-finite features in representation sets {bad}; the model diverged (check its training log)")
    y = np.concatenate([np.full(len(s["features"]), i, np.int64) for i, s in enumerate(sets)])
    return X, y, labels


def classify_sets(X: np.ndarray, y: np.ndarray, *, test_fraction: float, C: float, max_iter: int, seed: int) -> dict:
    """Train a linear SVM (one-vs-rest) on a stratified, seeded split and test it.

    Features are standardised with statistics of the training part only. Returns ``confusion``
    ((k, k) int64 counts, row = true set, column = predicted), ``accuracy``, ``test_index`` (rows
    of ``X`` in the test part), ``predicted`` and ``converged`` (False if liblinear stopped at
    ``max_iter``).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    index = np.arange(len(y))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(X[train_idx])
    # the dual solver: faster on these features than the primal that sklearn's 'auto' picks for n > p
    svm = LinearSVC(C=C, max_iter=max_iter, dual=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(scaler.transform(X[train_idx]), y[train_idx])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    predicted = svm.predict(scaler.transform(X[test_idx]))
    confusion = confusion_matrix(y[test_idx], predicted, labels=np.arange(y.max() + 1)).astype(np.int64)
    return {
        "confusion": confusion,
        "accuracy": float((predicted == y[test_idx]).mean()),
        "test_index": test_idx,
        "predicted": predicted,
        "converged": converged,
    }


def confusion_summary(confusion: np.ndarray, parts: list[dict]) -> tuple[dict, list[dict]]:
    """Where the SVM's mistakes go: the model (trained_on, seed) or the test dataset.

    ``parts``: per set (confusion order) ``{"label", "trained_on", "tested_on", "seed"}``.
    Returns the overall summary and one row per set: its test count, recall (the on-diagonal
    share), the share predicted as a set of the same model and as a set of the same test dataset.
    """
    confusion = np.asarray(confusion, np.int64)
    model = [(p["trained_on"], p["seed"]) for p in parts]
    same_model = np.array([[model[i] == model[j] for j in range(len(parts))] for i in range(len(parts))])
    same_test = np.array([[parts[i]["tested_on"] == parts[j]["tested_on"] for j in range(len(parts))] for i in range(len(parts))])
    counts = confusion.sum(axis=1)
    if (counts == 0).any():
        raise RepresentationSetError("a representation set has no test samples; raise samples_per_set or test_fraction")
    total = counts.sum()
    rows = [{
        "set": p["label"], "trained_on": p["trained_on"], "tested_on": p["tested_on"], "seed": p["seed"],
        "n_test": int(counts[i]),
        "recall": confusion[i, i] / counts[i],
        "same_model": confusion[i, same_model[i]].sum() / counts[i],
        "same_test_dataset": confusion[i, same_test[i]].sum() / counts[i],
    } for i, p in enumerate(parts)]
    off = ~np.eye(len(parts), dtype=bool)
    summary = {
        "n_sets": len(parts),
        "n_test": int(total),
        "accuracy": np.trace(confusion) / total,
        "mean_recall": float(np.mean([r["recall"] for r in rows])),
        "min_recall": float(min(r["recall"] for r in rows)),
        "max_recall": float(max(r["recall"] for r in rows)),
        "same_model": confusion[same_model].sum() / total,
        "same_test_dataset": confusion[same_test].sum() / total,
        "errors": int(total - np.trace(confusion)),
        # of the mistakes: right model, wrong test dataset / wrong model (any test dataset)
        "errors_test_dataset_only": int(confusion[off & same_model].sum()),
        "errors_model": int(confusion[off & ~same_model].sum()),
    }
    return summary, rows


def tsne_embedding(X: np.ndarray, *, perplexity: float, seed: int) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA initialisation, seeded) of standardised rows of ``X``."""
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if len(X) <= perplexity * 3:
        raise RepresentationSetError(f"t-SNE of {len(X)} points needs perplexity below {len(X) / 3:.1f} (got {perplexity}); lower tsne_perplexity or raise tsne_per_set")
    Z = StandardScaler().fit_transform(np.asarray(X, np.float64))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z)
