"""The minibatch CKA accumulator (Nguyen, Raghu & Kornblith 2021) and its minibatch schedule:
HSIC sums in float64, normalised only at the end (docs/design.md, "Minibatch CKA")."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from layersim.engine.grams import MIN_BATCH, BatchGrams, EstimatorError, NonFiniteInputError, UndefinedLayerWarning, _check_kernel, _is_torch
from layersim.parallel import thread_pool, single_blas_thread, thread_count


def _cross(grams_a: BatchGrams, grams_b: BatchGrams, threads: int = 1):
    """``G_a G_bᵀ`` as a float64 numpy array (one GEMM; ?syrk for self-similarity). ``threads > 1``
    (numpy): ``G_a``'s rows split over a pool, one BLAS thread each (docs/performance.md);
    ``threads == 1`` leaves the BLAS thread count alone (a Dask task)."""
    ga, gb = grams_a.grams, grams_b.grams
    if threads == 1 or _is_torch(ga):
        cross = ga @ gb.T  # numpy sends A·Aᵀ (gb is ga) to ?syrk
    elif gb is ga:
        with single_blas_thread():
            cross = ga @ ga.T
    else:
        cross = np.empty((len(ga), len(gb)), ga.dtype)

        def rows(s):
            cross[s] = ga[s] @ gb.T

        step = -(-len(ga) // threads)
        with single_blas_thread(), thread_pool(threads) as pool:
            list(pool.map(rows, [slice(i, i + step) for i in range(0, len(ga), step)]))
    if _is_torch(cross):
        return cross.detach().double().cpu().numpy()
    return np.asarray(cross, dtype=np.float64)


class MinibatchCKA:
    """Accumulator of minibatch CKA between the layers of two models (torchmetrics style).

    ``update`` only adds HSIC sums, ``compute`` only normalises, ``merge`` adds another
    accumulator's sums (so partial states can be reduced in any order), ``reset`` empties it.

    ``dtype`` is the precision of the Grams and their products (float32 default); the HSIC sums
    are always float64. ``layer_names_a``/``layer_names_b`` name layers in warnings and errors;
    ``threads``, ``backend`` and ``gram_kernel`` are the ``threads``, ``backend`` and ``kernel``
    of :meth:`BatchGrams.from_layers` (the all-pairs product is split over the same threads).

    Invariances: CKA is invariant to orthogonal transforms and isotropic scaling of either
    layer's features, not to general invertible linear maps.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 10))
    >>> acc = MinibatchCKA()
    >>> acc.update([x, x @ rng.normal(size=(10, 5))], [2 * x])
    >>> np.round(acc.compute(), 3).tolist()[0]
    [1.0]
    """

    def __init__(self, dtype=np.float32, layer_names_a=None, layer_names_b=None, *, threads: int | None = None, backend: str | None = None, gram_kernel: str = "auto"):
        self.dtype = np.dtype(dtype)
        self.gram_kernel = _check_kernel(gram_kernel)
        self.layer_names_a = layer_names_a
        self.layer_names_b = layer_names_b
        self.threads = threads
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self.hsic_ab: np.ndarray | None = None
        self.hsic_aa: np.ndarray | None = None
        self.hsic_bb: np.ndarray | None = None
        self.nonconstant_a: np.ndarray | None = None
        self.nonconstant_b: np.ndarray | None = None
        self.n_batches = 0

    def update(self, layers_a: Sequence, layers_b: Sequence | None = None) -> None:
        """Add one minibatch: lists of ``(n, ...)`` arrays, the same ``n`` samples in the same order.

        ``layers_b=None`` compares model a with itself. NaN or Inf in a layer (or a Gram past the
        range of ``dtype``) is a :class:`NonFiniteInputError` naming the model, layers and minibatch.
        """
        models = [layers_a] if layers_b is None else [layers_a, layers_b]
        try:
            grams = BatchGrams.from_models(models, self.dtype, threads=self.threads, backend=self.backend, kernel=self.gram_kernel)
        except NonFiniteInputError as err:
            raise err.located(layer_names=(self.layer_names_a, self.layer_names_b)[err.side], batch=f"minibatch {self.n_batches + 1}") from None
        self.update_grams(grams[0], grams[-1])  # one model's Grams are both sides of a self-comparison

    def update_grams(self, grams_a: BatchGrams, grams_b: BatchGrams) -> None:
        """Add one minibatch from precomputed Grams (shared by every pair a model is in)."""
        if grams_a.n != grams_b.n:
            raise EstimatorError(
                f"model a's minibatch has {grams_a.n} samples and model b's {grams_b.n}; "
                "both must hold the same samples"
            )
        n = grams_a.n
        batch = f"minibatch {self.n_batches + 1}"
        for side, (grams, names) in enumerate(((grams_a, self.layer_names_a), (grams_b, self.layer_names_b))):
            bad = np.flatnonzero(~np.isfinite(grams.self_hsic))
            if len(bad):
                raise NonFiniteInputError.of(f"model {'ab'[side]}", [(int(i), repr(names[i]) if names else f"#{i}", "NaN or Inf in its Gram") for i in bad], batch, side)
        hsic_ab = 2 * _cross(grams_a, grams_b, thread_count(self.threads)) / (n * (n - 3))  # both triangles
        if not np.isfinite(hsic_ab).all():  # finite Grams whose product overflows their dtype
            i, j = (int(k[0]) for k in np.nonzero(~np.isfinite(hsic_ab)))
            name_a = repr(self.layer_names_a[i]) if self.layer_names_a else f"#{i}"
            name_b = repr(self.layer_names_b[j]) if self.layer_names_b else f"#{j}"
            raise NonFiniteInputError(
                f"model a, layer {name_a} with model b, layer {name_b}, {batch}: their HSIC overflows {self.dtype} "
                "(activations too large for that precision); use dtype float64, or rescale the activations"
            )
        self._add(hsic_ab, grams_a.self_hsic, grams_b.self_hsic, grams_a.nonconstant, grams_b.nonconstant, 1)

    def _add(self, hsic_ab, hsic_aa, hsic_bb, nonconstant_a, nonconstant_b, n_batches) -> None:
        if self.hsic_ab is None:
            self.hsic_ab = np.zeros_like(hsic_ab)
            self.hsic_aa = np.zeros_like(hsic_aa)
            self.hsic_bb = np.zeros_like(hsic_bb)
            self.nonconstant_a = np.zeros(len(hsic_aa), bool)
            self.nonconstant_b = np.zeros(len(hsic_bb), bool)
        if hsic_ab.shape != self.hsic_ab.shape:
            raise EstimatorError(
                f"this batch has {hsic_ab.shape[0]} × {hsic_ab.shape[1]} layers but earlier "
                f"batches had {self.hsic_ab.shape[0]} × {self.hsic_ab.shape[1]}"
            )
        self.hsic_ab += hsic_ab
        self.hsic_aa += hsic_aa
        self.hsic_bb += hsic_bb
        self.nonconstant_a |= nonconstant_a
        self.nonconstant_b |= nonconstant_b
        self.n_batches += n_batches

    def merge(self, other: "MinibatchCKA") -> "MinibatchCKA":
        """Add another accumulator's sums into this one; returns ``self``."""
        if other.hsic_ab is not None:
            self._add(other.hsic_ab, other.hsic_aa, other.hsic_bb, other.nonconstant_a, other.nonconstant_b, other.n_batches)
        return self

    def undefined(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks of the layers of a and b whose CKA is undefined: constant in every
        batch, or a summed self-HSIC that is not positive."""
        if self.hsic_ab is None:
            raise EstimatorError("no minibatch was added: call update() before compute()")
        return (~self.nonconstant_a | (self.hsic_aa <= 0), ~self.nonconstant_b | (self.hsic_bb <= 0))

    def compute(self) -> np.ndarray:
        """The ``(La, Lb)`` CKA matrix (float64). Rows/columns of undefined layers are NaN and
        reported, by name, as an :class:`UndefinedLayerWarning`."""
        bad_a, bad_b = self.undefined()
        with np.errstate(invalid="ignore", divide="ignore"):
            cka = self.hsic_ab / np.sqrt(np.outer(np.where(bad_a, np.nan, self.hsic_aa), np.where(bad_b, np.nan, self.hsic_bb)))
        for bad, names, side in ((bad_a, self.layer_names_a, "a"), (bad_b, self.layer_names_b, "b")):
            if bad.any():
                which = [names[i] if names else f"#{i}" for i in np.flatnonzero(bad)]
                warnings.warn(
                    f"CKA is undefined for {len(which)} layer(s) of model {side} (constant "
                    f"activations or non-positive self-HSIC): {', '.join(which)}; their "
                    "entries are NaN",
                    UndefinedLayerWarning,
                    stacklevel=2,
                )
        return cka


def minibatch_rows(n_samples: int, batch_size: int = 256, passes: int = 10) -> list[np.ndarray]:
    """Row positions of every minibatch: per pass ``r = 1..passes`` a permutation seeded by
    ``r``, cut into batches of ``batch_size`` (the remainder dropped), each sorted.

    >>> [b.tolist() for b in minibatch_rows(10, batch_size=4, passes=1)]
    [[0, 4, 7, 8], [1, 2, 5, 9]]
    """
    if batch_size < MIN_BATCH:
        raise EstimatorError(f"CKA batch size {batch_size} is too small: the unbiased HSIC estimator needs at least {MIN_BATCH}")
    if n_samples < batch_size:
        raise EstimatorError(
            f"only {n_samples} samples for a CKA batch size of {batch_size}: lower the batch "
            "size or extract more samples"
        )
    if passes < 1:
        raise EstimatorError(f"passes must be at least 1, got {passes}")
    usable = (n_samples // batch_size) * batch_size
    perms = [np.random.default_rng(r).permutation(n_samples)[:usable] for r in range(1, passes + 1)]
    return [np.sort(b) for perm in perms for b in perm.reshape(-1, batch_size)]
