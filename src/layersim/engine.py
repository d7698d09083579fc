"""Minibatch CKA (Nguyen, Raghu & Kornblith 2021) and its Dask engine over activation stores.

The estimator (see ``docs/design.md``): for every minibatch of ``n`` samples and every layer,
flatten the activations to ``X (n, p)``, form ``K = X Xᵀ``, set ``diag(K) = 0`` and U-centre it::

    Ũ_ij = K_ij − K_i·/(n−2) − K_·j/(n−2) + K_··/((n−1)(n−2))   (i ≠ j),   Ũ_ii = 0

so that ``HSIC₁(K, L) = ⟨Ũ(K), Ũ(L)⟩ / (n(n−3))`` is the unbiased estimator of Song et al.
(2012). HSIC values are *summed* (in float64) over batches and passes; only at the end::

    CKA_ab = Σ HSIC(K_a, L_b) / sqrt(Σ HSIC(K_a, K_a) · Σ HSIC(L_b, L_b))

Cost: each Gram once per layer per batch; every U-centred Gram is flattened to a row of
``G (L, n²)`` so that all layer pairs of two models come from one product ``G_a G_bᵀ``.

The maths here works on numpy or torch arrays (torch stays on its device until the small
``(La, Lb)`` HSIC block is summed in float64 on the host). Dask only appears in
:func:`compare_stores`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError


class EstimatorError(LayersimError):
    """Input that the minibatch CKA estimator cannot use."""


class UndefinedLayerWarning(UserWarning):
    """A layer's self-HSIC is not positive (e.g. constant activations): its CKA is undefined."""


MIN_BATCH = 4  # the unbiased HSIC divides by n(n−3) and (n−1)(n−2)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _flatten(x, dtype):
    """``(n, ...)`` → ``(n, p)`` in ``dtype`` (a numpy dtype; torch inputs keep their device)."""
    if _is_torch(x):
        import torch

        tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        return x.detach().reshape(x.shape[0], -1).to(tdtype)
    x = np.asarray(x)
    return np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=dtype)


def _check_batch(n: int) -> None:
    if n < MIN_BATCH:
        raise EstimatorError(
            f"a minibatch of {n} samples is too small: the unbiased HSIC estimator needs at "
            f"least {MIN_BATCH} (use a larger batch size)"
        )


# ---------------------------------------------------------------------------------------------
# Kernels. A Gram is ``x @ x.T``: numpy sends a matrix times its own transpose to BLAS ?syrk
# (n²p flops, half a GEMM's) and mirrors the triangle, and it releases the GIL, so the Grams of
# a batch run in parallel on a thread pool. (scipy.linalg.blas.ssyrk holds the GIL: a pool of
# threads calling it ran no faster than one thread.) The centring terms (row sums, total) are
# summed in float64 and subtracted from each float32 Gram entry in float64, with one rounding
# at the end, so a float32 Gram of uncentred (e.g. post-ReLU) activations keeps the accuracy of
# the Gram itself. Rows of ``BatchGrams.grams`` are the flattened U-centred Grams.
# ---------------------------------------------------------------------------------------------


def _centre_numpy(k: np.ndarray, out: np.ndarray) -> float:
    """U-centre the symmetric Gram ``k (n, n)`` (overwritten) into ``out``; returns ‖Ũ(k)‖²_F.

    ‖Ũ(k)‖²_F = HSIC(K, K)·n(n−3), summed in float64 from the stored (rounded) entries.
    """
    n = k.shape[0]
    np.fill_diagonal(k, 0)
    r = k.sum(0, dtype=np.float64)  # column sums (k is symmetric: ?syrk mirrors its triangle); faster than row sums
    u = r / (n - 2) - r.sum() / (2 * (n - 1) * (n - 2))  # Ũ_ij = K_ij − u_i − u_j  (i ≠ j)
    centred = k.astype(np.float64)
    centred -= u[:, None]
    centred -= u[None, :]
    np.fill_diagonal(centred, 0)
    out[...] = centred
    if out.dtype != np.float64:
        centred[...] = out  # the stored (rounded) entries, in float64
    flat = centred.reshape(-1)
    return float(np.dot(flat, flat))


def _gram_numpy(x, dtype, out: np.ndarray) -> tuple[float, bool]:
    """One layer: ``x (n, ...)`` → Ũ(X Xᵀ) in ``out (n, n)``.

    Returns ``(HSIC(K, K)·n(n−3), nonconstant)``.
    """
    x = _flatten(x, dtype)
    _check_batch(x.shape[0])
    return _centre_numpy(x @ x.T, out), _is_nonconstant(x)


def _grams_torch(layers, dtype):
    """The torch backend of :func:`_gram_numpy` for a list of layers (any device).

    Layers of the same width are stacked and their Grams taken in one batched product; the
    centring is done in float64 on the device. Nothing waits for the device: the results are
    ``(rows (L, n²), self_hsic·n(n−3) (L,), nonconstant (L,))`` tensors there
    (see :func:`_to_host`).
    """
    import torch

    xs = [_flatten(x if _is_torch(x) else torch.from_numpy(np.asarray(x)), dtype) for x in layers]
    n = xs[0].shape[0]
    _check_batch(n)
    device = xs[0].device
    widths: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        widths.setdefault(x.shape[1], []).append(i)
    rows, self_hsic, nonconstant = [], [], []
    for p, idx in widths.items():
        parts = _feature_parts(p, device)
        # (B, parts, n, p/parts): each layer's features cut into `parts` slices, one Gram each
        x = torch.stack([xs[i].view(n, parts, p // parts).transpose(0, 1) for i in idx]) if len(idx) > 1 or parts > 1 else xs[idx[0]].view(1, 1, n, p)
        partial = torch.bmm(x.view(-1, n, p // parts), x.view(-1, n, p // parts).transpose(1, 2))
        k = partial.view(len(idx), parts, n, n).sum(1, dtype=torch.float64)
        k.diagonal(dim1=1, dim2=2).zero_()
        r = k.sum(2)
        u = r / (n - 2) - r.sum(1, keepdim=True) / (2 * (n - 1) * (n - 2))
        k -= u[:, :, None] + u[:, None, :]
        k.diagonal(dim1=1, dim2=2).zero_()
        rounded = k.to(xs[0].dtype)
        rows.append(rounded)
        self_hsic.append(rounded.double().square().sum((1, 2)))
        nonconstant.append((x != x[:, :, :1]).flatten(1).any(1))
    rows, self_hsic, nonconstant = torch.cat(rows), torch.cat(self_hsic), torch.cat(nonconstant)
    order = [i for idx in widths.values() for i in idx]
    if order != sorted(order):  # back to the layers' order (the index is copied without waiting)
        inverse = torch.from_numpy(np.argsort(order)).to(device, non_blocking=True)
        rows, self_hsic, nonconstant = rows[inverse], self_hsic[inverse], nonconstant[inverse]
    return rows.reshape(len(xs), n * n), self_hsic, nonconstant


def _to_host(*tensors) -> list[np.ndarray]:
    """1-D device tensors as float64 numpy arrays, in one copy (one wait for the device)."""
    import torch

    sizes = [len(t) for t in tensors]
    joined = torch.cat([t.double() for t in tensors]).cpu().numpy()
    return np.split(joined, np.cumsum(sizes)[:-1])


def _feature_parts(p: int, device) -> int:
    """Slices of the feature axis whose Grams are summed, on a GPU: an ``n × n`` Gram is a few
    output tiles of a product, too few to keep the chip busy; ``parts`` batched products of
    ``p/parts`` features each fill it (and are summed in float64). One on a CPU."""
    if device.type == "cpu":
        return 1
    parts = min(32, p // 512)
    while parts > 1 and p % parts:
        parts -= 1
    return max(1, parts)


def u_centred_gram(x, dtype=np.float32):
    """The U-centred linear Gram matrix ``Ũ(X Xᵀ)`` of one layer's minibatch.

    Parameters
    ----------
    x : array ``(n, ...)``
        Activations of ``n`` samples (numpy or torch); flattened per sample.
    dtype : numpy dtype
        Precision of the Gram (float32 by default; float64 on request).

    Returns
    -------
    array ``(n, n)``
        Zero diagonal; every row and column sums to zero.
    """
    if _is_torch(x):
        n = x.shape[0]
        _check_batch(n)
        return _grams_torch([x], dtype)[0].reshape(n, n)
    n = np.shape(x)[0]
    _check_batch(n)
    out = np.empty((n, n), dtype=np.dtype(dtype))
    _gram_numpy(x, dtype, out)
    return out


def _is_nonconstant(x) -> bool:
    """Whether the rows of ``x (n, p)`` are not all identical (else every centred Gram is 0).

    Rows 0 and 1 differ for almost every real layer, so the full pass is rarely needed.
    """
    if bool((x[1] != x[0]).any()):
        return True
    return bool((x != x[:1]).any())


def _to_float64(x) -> np.ndarray:
    if _is_torch(x):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Threads: the Grams of one batch are independent BLAS calls of very different sizes. On a few
# cores, one BLAS thread per Gram and the layers spread over a thread pool (largest first)
# usually beats one multi-threaded BLAS call after another: the threaded ?syrk synchronises
# often for an n × n result this small (see docs/performance.md).
# ---------------------------------------------------------------------------------------------

_POOLS: dict[int, object] = {}
_CONTROLLER = None


def default_threads() -> int:
    """Threads the engine uses when not told: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: int | None) -> int:
    """The engine's ``threads`` argument as a count: ``None`` means every CPU."""
    return default_threads() if threads is None else max(1, int(threads))


def _pool(threads: int):
    from concurrent.futures import ThreadPoolExecutor

    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="layersim-gram")
    return _POOLS[threads]


def _single_blas_thread():
    """Context: one BLAS thread (every loaded BLAS library)."""
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


@dataclass
class BatchGrams:
    """The flattened U-centred Grams ``G (L, n²)`` of one model for one minibatch.

    Row ``i`` is layer ``i``'s ``Ũ(X Xᵀ)``, flattened, so that
    ``HSIC(K_i, L_j) = G_i · H_j / (n(n−3))``. ``self_hsic`` are the ``(L,)`` HSIC(K, K) values
    (float64); ``nonconstant`` flags layers whose activations vary within the batch.
    """

    grams: object
    n: int
    self_hsic: np.ndarray
    nonconstant: np.ndarray

    @classmethod
    def from_layers(cls, layers: Sequence, dtype=np.float32, *, threads: int | None = None, backend: str | None = None) -> "BatchGrams":
        """Compute the Grams of every layer of one minibatch (each exactly once).

        Parameters
        ----------
        layers : sequence of arrays ``(n, ...)``
            numpy or torch; the same ``n`` samples in every layer.
        dtype : numpy dtype
            float32 (default) or float64 Grams; self-HSIC is summed in float64 either way.
        threads : int, optional
            Grams computed in parallel, one BLAS thread each (default: every CPU). ``1``
            computes them one after another without touching the BLAS thread count (what a
            Dask task does).
        backend : {"numpy", "torch"}, optional
            Default: torch for torch tensors on an accelerator, numpy (``x @ x.T``, BLAS ?syrk) otherwise
            (CPU torch tensors are read without a copy).
        """
        return cls.from_models([layers], dtype, threads=threads, backend=backend)[0]

    @classmethod
    def from_models(cls, models: Sequence[Sequence], dtype=np.float32, *, threads: int | None = None, backend: str | None = None) -> list["BatchGrams"]:
        """:meth:`from_layers` for several models' layers of one minibatch at once (one
        parallel sweep over all their layers, largest first, instead of one per model)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise EstimatorError(f"dtype must be float32 or float64, got {dtype}")
        n = None
        for m, layers in enumerate(models):
            if len(layers) == 0:
                raise EstimatorError("no layers given")
            n = layers[0].shape[0] if n is None else n
            for i, x in enumerate(layers):
                if x.shape[0] != n:
                    if m > 0 and i == 0:
                        raise EstimatorError(f"model a's minibatch has {n} samples and model b's {x.shape[0]}; both must hold the same samples")
                    raise EstimatorError(f"layer {i} has {x.shape[0]} samples but layer 0 has {n}; every layer of a batch needs the same samples")
        _check_batch(n)
        flat = [x for layers in models for x in layers]
        if backend is None:
            backend = "torch" if any(_is_torch(x) and x.device.type != "cpu" for x in flat) else "numpy"
        if backend == "torch":
            return cls._from_models_torch(models, dtype)
        if backend != "numpy":
            raise EstimatorError(f"backend must be 'numpy' or 'torch', got {backend!r}")
        flat = [x.detach().cpu().numpy() if _is_torch(x) else x for x in flat]
        grams = np.empty((len(flat), n * n), dtype=dtype)
        self_hsic = np.empty(len(flat))
        nonconstant = np.empty(len(flat), bool)

        def one(i):
            self_hsic[i], nonconstant[i] = _gram_numpy(flat[i], dtype, grams[i].reshape(n, n))

        threads = _threads(threads)
        if threads == 1 or len(flat) == 1:
            for i in range(len(flat)):
                one(i)
        else:
            order = sorted(range(len(flat)), key=lambda i: -int(np.prod(flat[i].shape[1:])))
            with _single_blas_thread():
                list(_pool(threads).map(one, order))
        out, start = [], 0
        for layers in models:
            s = slice(start, start + len(layers))
            out.append(cls(grams[s], n, self_hsic[s] / (n * (n - 3)), nonconstant[s]))
            start += len(layers)
        return out

    @classmethod
    def _from_models_torch(cls, models, dtype) -> list["BatchGrams"]:
        out = [_grams_torch(layers, dtype) for layers in models]
        stats = _to_host(*(t for _, self_hsic, nonconstant in out for t in (self_hsic, nonconstant)))
        n = models[0][0].shape[0]
        return [cls(rows, n, stats[2 * m] / (n * (n - 3)), stats[2 * m + 1] > 0) for m, (rows, _, _) in enumerate(out)]

    def __len__(self) -> int:
        return self.grams.shape[0]


def _cross(grams_a: BatchGrams, grams_b: BatchGrams, threads: int = 1):
    """``G_a G_bᵀ`` as a float64 numpy array (one GEMM; ?syrk for self-similarity).

    ``threads > 1`` (numpy): the rows of ``G_a`` are split over the Gram pool, one BLAS thread
    each, and self-similarity is one single-threaded ?syrk. A multi-threaded BLAS call here
    would leave OpenBLAS's own threads spinning through the next batch's Grams (6–10 % of the
    standard workload). ``threads == 1`` leaves the BLAS thread count alone (a Dask task).
    """
    ga, gb = grams_a.grams, grams_b.grams
    if threads == 1 or _is_torch(ga):
        cross = ga @ ga.T if gb is ga else ga @ gb.T  # numpy sends A·Aᵀ to ?syrk
    elif gb is ga:
        with _single_blas_thread():
            cross = ga @ ga.T
    else:
        cross = np.empty((len(ga), len(gb)), ga.dtype)

        def rows(s):
            cross[s] = ga[s] @ gb.T

        step = -(-len(ga) // threads)
        with _single_blas_thread():
            list(_pool(threads).map(rows, [slice(i, i + step) for i in range(0, len(ga), step)]))
    return _to_float64(cross)


class MinibatchCKA:
    """Accumulator of minibatch CKA between the layers of two models (torchmetrics style).

    ``update`` only adds HSIC sums, ``compute`` only normalises, ``merge`` adds another
    accumulator's sums (so partial states can be reduced in any order), ``reset`` empties it.

    Parameters
    ----------
    dtype : numpy dtype
        Precision of the Grams and their products (float32 default, float64 on request);
        the HSIC sums are always float64.
    layer_names_a, layer_names_b : list of str, optional
        Used to name layers in warnings.
    threads : int, optional
        Grams of a batch computed in parallel, one BLAS thread each, and the all-pairs product
        split over the same threads (default: every CPU; see :meth:`BatchGrams.from_layers`).
        ``1`` leaves the BLAS thread count alone.
    backend : {"numpy", "torch"}, optional
        Array backend of the Grams (default: torch for tensors on an accelerator, else numpy).

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

    def __init__(self, dtype=np.float32, layer_names_a=None, layer_names_b=None, *, threads: int | None = None, backend: str | None = None):
        self.dtype = np.dtype(dtype)
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

        ``layers_b=None`` compares model a with itself (its Grams are computed once).
        """
        if layers_b is None:
            grams_a = grams_b = BatchGrams.from_layers(layers_a, self.dtype, threads=self.threads, backend=self.backend)
        else:
            grams_a, grams_b = BatchGrams.from_models([layers_a, layers_b], self.dtype, threads=self.threads, backend=self.backend)
        self.update_grams(grams_a, grams_b)

    def update_grams(self, grams_a: BatchGrams, grams_b: BatchGrams) -> None:
        """Add one minibatch from precomputed Grams (shared by every pair a model is in)."""
        if grams_a.n != grams_b.n:
            raise EstimatorError(
                f"model a's minibatch has {grams_a.n} samples and model b's {grams_b.n}; "
                "both must hold the same samples"
            )
        n = grams_a.n
        hsic_ab = _cross(grams_a, grams_b, _threads(self.threads)) / (n * (n - 3))
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
        """Boolean masks of the layers of a and b whose CKA is undefined.

        A layer is undefined when its activations were constant in every batch, or when its
        summed self-HSIC is not positive.
        """
        self._require_data()
        return (~self.nonconstant_a | (self.hsic_aa <= 0), ~self.nonconstant_b | (self.hsic_bb <= 0))

    def compute(self) -> np.ndarray:
        """The ``(La, Lb)`` CKA matrix (float64).

        Rows/columns of undefined layers are NaN and reported, by name, as an
        :class:`UndefinedLayerWarning`.
        """
        self._require_data()
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

    def _require_data(self) -> None:
        if self.hsic_ab is None:
            raise EstimatorError("no minibatch was added: call update() before compute()")


# ---------------------------------------------------------------------------------------------
# Batches and stores
# ---------------------------------------------------------------------------------------------


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
    batches = []
    for r in range(1, passes + 1):
        perm = np.random.default_rng(r).permutation(n_samples)
        usable = (n_samples // batch_size) * batch_size
        batches.extend(np.sort(b) for b in perm[:usable].reshape(-1, batch_size))
    return batches


def _layer_blocks(sizes: Sequence[int], block: int, min_blocks: int = 1) -> list[list[int]]:
    """Layer indices of each Gram task: at most ``block`` layers a task, at least ``min_blocks``
    tasks (when there are as many layers), balanced by Gram cost (∝ features) largest first."""
    n_blocks = min(len(sizes), max(-(-len(sizes) // block), min_blocks))
    blocks: list[list[int]] = [[] for _ in range(n_blocks)]
    load = [0] * n_blocks
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = min((j for j in range(n_blocks) if len(blocks[j]) < block), key=lambda j: load[j])
        blocks[j].append(i)
        load[j] += sizes[i]
    return [sorted(b) for b in blocks if b]


_STORES: dict[tuple, object] = {}
_MMAP_THRESHOLD_SET = False


def _release_freed_blocks_to_the_os() -> None:
    """Out of core, every task allocates and frees shard-sized read buffers (MiBs). glibc's
    malloc raises its mmap threshold after each such free (up to 32 MiB) and then keeps those
    blocks in per-thread arenas, so the RSS grows with the number of minibatches (measured
    1.44× at 4× the samples). A fixed 1 MiB threshold (``mallopt(M_MMAP_THRESHOLD)``) maps
    every large buffer and unmaps it when freed: RSS stays flat (1.05×). Process-wide, set
    once; a no-op where libc has no ``mallopt`` (not glibc)."""
    global _MMAP_THRESHOLD_SET
    if _MMAP_THRESHOLD_SET:
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = -3 (malloc.h)
    except (OSError, AttributeError):
        pass
    _MMAP_THRESHOLD_SET = True


def _open_store(path: str, cache_bytes: int = 0):
    """One :class:`~layersim.store.ActivationStore` per store version and process.

    Tasks of one computation share it (and its in-memory cache); the key includes the
    store's modification time, so a rewritten store is never served from an old cache.
    """
    from layersim.store import ActivationStore

    key = (str(path), os.stat(os.path.join(path, "zarr.json")).st_mtime_ns, cache_bytes)
    if key not in _STORES:
        for old in [k for k in _STORES if k[0] == key[0]]:
            del _STORES[old]
        _STORES[key] = ActivationStore(path, cache_bytes=cache_bytes)
    return _STORES[key]


def _store_grams(path: str, layers: list[str], rows: np.ndarray, dtype: str, cache_bytes: int = 0, device: str | None = None) -> BatchGrams:
    """Task: the Grams of a block of layers for one minibatch, reading one layer at a time.

    Memory: one layer's minibatch besides the Grams (out of core, only its rows are read).
    With a torch ``device`` the block's minibatch is copied there and its Grams computed there.
    """
    store = _open_store(path, cache_bytes)
    dtype = np.dtype(dtype)
    n = len(rows)
    _check_batch(n)
    if device is not None:
        return BatchGrams.from_layers([store.read_torch(layer, rows, device) for layer in layers], dtype, backend="torch")
    grams = np.empty((len(layers), n * n), dtype=dtype)
    self_hsic = np.empty(len(layers))
    nonconstant = np.empty(len(layers), bool)
    for i, layer in enumerate(layers):
        self_hsic[i], nonconstant[i] = _gram_numpy(store.read(layer, rows), dtype, grams[i].reshape(n, n))
    return BatchGrams(grams, n, self_hsic / (n * (n - 3)), nonconstant)


def _concat_grams(blocks: list[BatchGrams], order: list[int] | None = None) -> BatchGrams:
    """One model's Grams from its blocks; ``order[k]`` is the layer of the k-th concatenated row."""
    if len(blocks) == 1 and order is None:
        return blocks[0]
    if _is_torch(blocks[0].grams):
        import torch

        grams = torch.cat([b.grams for b in blocks])
    else:
        grams = np.concatenate([b.grams for b in blocks])
    self_hsic = np.concatenate([b.self_hsic for b in blocks])
    nonconstant = np.concatenate([b.nonconstant for b in blocks])
    if order is not None:
        inverse = np.argsort(order)
        grams = grams[torch.from_numpy(inverse).to(grams.device)] if _is_torch(grams) else grams[inverse]
        self_hsic, nonconstant = self_hsic[inverse], nonconstant[inverse]
    return BatchGrams(grams, blocks[0].n, self_hsic, nonconstant)


def _batch_states(grams: dict[str, list[BatchGrams]], pairs: list[tuple[str, str]], dtype: str, orders: dict[str, list[int]] | None = None) -> list[MinibatchCKA]:
    """Task: one minibatch's accumulator state for every pair, from each model's Grams."""
    orders = orders or {}
    full = {name: _concat_grams(blocks, orders.get(name)) for name, blocks in grams.items()}
    states = []
    for a, b in pairs:
        acc = MinibatchCKA(dtype, threads=1)  # a Dask task: BLAS threads are the scheduler's
        acc.update_grams(full[a], full[a] if a == b else full[b])
        states.append(acc)
    return states


def _merge_states(*groups: list[MinibatchCKA]) -> list[MinibatchCKA]:
    """Task: element-wise merge of lists of per-pair states (a node of the tree reduction)."""
    merged = [MinibatchCKA(s.dtype).merge(s) for s in groups[0]]
    for group in groups[1:]:
        for acc, other in zip(merged, group):
            acc.merge(other)
    return merged


def compare_stores(
    stores: dict[str, str],
    pairs: list[tuple[str, str]],
    *,
    batch_size: int = 256,
    passes: int = 10,
    dtype: str = "float32",
    threads: int = 1,
    layer_block: int = 16,
    split_every: int = 8,
    cache_mb: float = 1024,
    scheduler_address: str | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[tuple[str, str], "xarray.Dataset"]:
    """Minibatch CKA between every layer pair of each given pair of activation stores.

    Each model's Grams are computed once per layer per minibatch and shared by every pair it
    is in. The Dask graph has one task per (minibatch, model, layer block) for the Grams, one
    per minibatch for the products, and a tree reduction (``split_every`` states a node) of
    the accumulator states.

    Parameters
    ----------
    stores : dict
        Model name → path of its activation store (all with the same ``sample_id``).
    pairs : list of (str, str)
        Names to compare; ``(a, a)`` is a self-comparison.
    batch_size, passes : int
        Minibatches of ``batch_size`` from ``passes`` seeded permutations (see
        :func:`minibatch_rows`).
    dtype : {"float32", "float64"}
        Precision of Grams and products; HSIC sums are float64 either way.
    threads : int
        Threads of the local Dask scheduler.
    cache_mb : float
        Stores of at most this size (MiB) are read once and kept in memory; larger ones are
        read minibatch by minibatch (memory then stays flat in the number of samples).
    scheduler_address : str, optional
        Address of a running ``distributed`` scheduler (e.g. ``tcp://host:8786``) to run on
        instead of local threads.
    device : str, optional
        A torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``): Grams and products are computed
        there with the torch backend (same layout, float64 centring and sums); cached stores
        are kept there too, like the host cache, for later calls. Default: numpy on the CPU
        (BLAS ``?syrk``). See :func:`layersim.device.torch_device` for ``auto``.

    Returns
    -------
    dict
        ``(a, b)`` → ``xarray.Dataset`` with ``cka`` and ``hsic_sum`` ``(layer_a, layer_b)`` and
        the self-HSIC sums ``hsic_aa_sum (layer_a)``, ``hsic_bb_sum (layer_b)``.
    """
    import dask

    from layersim.store import check_comparable

    if dtype not in ("float32", "float64"):
        raise EstimatorError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if device is not None:
        from layersim.device import torch_device

        device = torch_device(device)
    missing = sorted({m for pair in pairs for m in pair} - set(stores))
    if missing:
        raise EstimatorError(f"pairs name models without a store: {missing}")
    used = sorted({m for pair in pairs for m in pair}, key=list(stores).index)
    cache_bytes = int(cache_mb * 2**20)
    opened = {name: _open_store(str(stores[name]), cache_bytes) for name in used}
    if not all(store.cached for store in opened.values()):
        _release_freed_blocks_to_the_os()
    first = opened[used[0]]
    for name in used[1:]:
        check_comparable(first, opened[name])
    batches = minibatch_rows(len(first), batch_size, passes)

    blocks, orders = {}, {}
    for name in used:
        layers = opened[name].layers
        sizes = [int(np.prod(opened[name].feature_shape(layer))) for layer in layers]
        # on the CPU at least one block per thread (the pool computes them in parallel); a GPU
        # takes a block's Grams in a few batched products, so fewer, larger blocks
        min_blocks = 1 if device is not None else max(1, threads)
        blocks[name] = [[layers[i] for i in block] for block in _layer_blocks(sizes, max(1, layer_block), min_blocks=min_blocks)]
        orders[name] = [layers.index(layer) for block in blocks[name] for layer in block]
    states = []
    for rows in batches:
        grams = {
            name: [dask.delayed(_store_grams, pure=True)(str(stores[name]), block, rows, dtype, cache_bytes, device) for block in blocks[name]]
            for name in used
        }
        states.append(dask.delayed(_batch_states, pure=True)(grams, pairs, dtype, orders))
    while len(states) > 1:
        states = [
            dask.delayed(_merge_states, pure=True)(*states[i : i + split_every])
            for i in range(0, len(states), split_every)
        ]
    final = _run(states[0], threads=threads, scheduler_address=scheduler_address, progress=progress)

    results = {}
    for (a, b), acc in zip(pairs, final):
        acc.layer_names_a, acc.layer_names_b = opened[a].layers, opened[b].layers
        results[(a, b)] = _to_dataset(acc, opened[a], opened[b], batch_size=batch_size, passes=passes, dtype=dtype, device=device or "cpu (numpy)")
    return results


def _run(graph, *, threads: int, scheduler_address: str | None, progress: bool):
    import dask

    if scheduler_address:
        from distributed import Client

        with Client(scheduler_address) as client:
            return client.compute(graph).result()
    from layersim.progress import DaskTqdm

    # One BLAS thread per Dask thread: the Grams are many small products, and a multi-threaded
    # BLAS inside each of several Dask threads oversubscribes the cores (10× slower here).
    with _single_blas_thread(), DaskTqdm(disable=not progress, desc="minibatch CKA"):
        (result,) = dask.compute(graph, scheduler="threads", num_workers=max(1, threads))
    return result


def _to_dataset(acc: MinibatchCKA, store_a, store_b, **attrs):
    import xarray as xr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedLayerWarning)
        cka = acc.compute()
    for w in caught:
        warnings.warn(f"{store_a.name} vs {store_b.name}: {w.message}", UndefinedLayerWarning, stacklevel=3)
    bad_a, bad_b = acc.undefined()
    coords = {"layer_a": list(store_a.layers), "layer_b": list(store_b.layers)}
    return xr.Dataset(
        {
            "cka": (("layer_a", "layer_b"), cka),
            "hsic_sum": (("layer_a", "layer_b"), acc.hsic_ab),
            "hsic_aa_sum": (("layer_a",), acc.hsic_aa),
            "hsic_bb_sum": (("layer_b",), acc.hsic_bb),
        },
        coords=coords,
        attrs={
            "metric": "minibatch_linear_cka",
            "estimator": "unbiased HSIC (Song et al. 2012), sums over minibatches (Nguyen et al. 2021)",
            "model_a": store_a.name,
            "model_b": store_b.name,
            "n_batches": acc.n_batches,
            "n_samples": len(store_a),
            "undefined_layers_a": [l for l, bad in zip(store_a.layers, bad_a) if bad],
            "undefined_layers_b": [l for l, bad in zip(store_b.layers, bad_b) if bad],
            **attrs,
        },
    )
