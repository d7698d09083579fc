"""Gram kernels of the minibatch CKA: the U-centred Gram ``Ũ(X Xᵀ)`` of each layer of a minibatch
(:func:`layersim.metrics.kernel.u_centre`), its entries above the diagonal a row of
``G (L, n(n−1)/2)`` (:class:`BatchGrams`);
the estimator and its cost model: docs/design.md. numpy or torch arrays (torch stays on its device).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError
from layersim.metrics.kernel import u_centre, u_centring_offsets
from layersim.parallel import thread_pool, single_blas_thread, thread_count


class EstimatorError(LayersimError):
    """Input that the minibatch CKA estimator cannot use."""


class NonFiniteInputError(EstimatorError):
    """NaN or Inf in a layer's activations, or a Gram past the range of its precision: no CKA
    from that minibatch. ``model``, ``layers`` (``(index, label, detail)`` of each such layer),
    ``side`` (0: model a) and ``batch`` say where; :meth:`located` names them."""

    @classmethod
    def of(cls, model: str, layers: list, batch: str | None = None, side: int = 0) -> "NonFiniteInputError":
        listed = "; ".join(f"layer {label}: {detail}" for _, label, detail in layers)
        err = cls(f"{model}{f', {batch}' if batch else ''}: {listed}. CKA needs finite activations and Grams: check the model and its inputs")
        err.model, err.layers, err.batch, err.side = model, layers, batch, side
        return err

    def located(self, model: str | None = None, layer_names=None, batch: str | None = None) -> "NonFiniteInputError":
        """This error with the model's name, its layers' names and the batch, where given."""
        layers = [(i, repr(layer_names[i]) if layer_names else label, detail) for i, label, detail in self.layers]
        return self.of(model or self.model, layers, batch or self.batch, self.side)


def _non_finite_detail(x, dtype) -> str:
    """Why the Gram of ``x (n, ...)`` in ``dtype`` is not finite, in words (read only on error)."""
    x = x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)
    n_nan = int(np.isnan(x).sum()) if x.dtype.kind in "fc" else 0
    n_inf = int(np.isinf(x).sum()) if x.dtype.kind in "fc" else 0
    if n_nan or n_inf:
        return f"{n_nan} NaN and {n_inf} infinite activations (of {x.size})"
    return f"finite activations (largest |value| {float(np.abs(x).max()):.3g}) whose Gram overflows {np.dtype(dtype)}: use dtype float64, or rescale them"


def _require_finite(out: list, models, dtype) -> list:
    """``out`` (one :class:`BatchGrams` per model), or :class:`NonFiniteInputError` naming every
    layer whose self-HSIC is not finite: NaN or Inf anywhere in a Gram makes it so."""
    for m, grams in enumerate(out):
        bad = np.flatnonzero(~np.isfinite(grams.self_hsic))
        if len(bad):
            model = f"model {'ab'[m]}" if len(out) <= 2 else f"model {m}"
            raise NonFiniteInputError.of(model, [(int(i), f"#{i}", _non_finite_detail(models[m][i], dtype)) for i in bad], side=m)
    return out


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


# Kernels: Grams from BLAS, centring terms in float64 (docs/performance.md, "How the engine is made fast")


def _gram_syrk(x: np.ndarray) -> np.ndarray:
    """``x xᵀ`` as numpy writes it: BLAS ?syrk (``n²p`` flops), the upper triangle mirrored."""
    return x @ x.T


def _gram_gemm(x: np.ndarray) -> np.ndarray:
    """``x xᵀ`` as two GEMMs of row halves against all rows (``2n²p`` flops; the operands are not
    one matrix and its transpose, so numpy does not send them to ?syrk)."""
    n = x.shape[0]
    k = np.empty((n, n), x.dtype)
    np.matmul(x[: n // 2], x.T, out=k[: n // 2])
    np.matmul(x[n // 2:], x.T, out=k[n // 2:])
    return k


def _gram_blocked(blocks: int) -> Callable[[np.ndarray], np.ndarray]:
    """``x xᵀ`` from ``blocks`` row blocks: the ``T(T+1)/2`` block products of the lower triangle
    (off the diagonal GEMMs, on it ?syrk as numpy sends a block times its transpose), each
    written in place, then mirrored: ``(T+1)/T · n²p`` flops."""

    def gram(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        edges = [n * i // blocks for i in range(blocks + 1)]
        rows = [slice(edges[i], edges[i + 1]) for i in range(blocks)]
        k = np.empty((n, n), x.dtype)
        for i, ri in enumerate(rows):
            for rj in rows[: i + 1]:
                np.matmul(x[ri], x[rj].T, out=k[ri, rj])
        for i, ri in enumerate(rows):
            for rj in rows[:i]:
                k[rj, ri] = k[ri, rj].T
        return k

    return gram


GRAM_KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "syrk": _gram_syrk,
    "gemm": _gram_gemm,
    "blocked2": _gram_blocked(2),
    "blocked4": _gram_blocked(4),
}
"""The numpy Gram kernels ``x (n, p) → x xᵀ (n, n)`` by name; they differ only in speed (which is
fastest depends on the CPU and its BLAS: :func:`gram_kernel_for` measures)."""


def _check_kernel(kernel: str) -> str:
    """``kernel`` if it names a Gram kernel or is ``"auto"``, else :class:`EstimatorError`."""
    if kernel != "auto" and kernel not in GRAM_KERNELS:
        raise EstimatorError(f"unknown Gram kernel {kernel!r}: use 'auto' (measured on this machine) or one of {', '.join(map(repr, GRAM_KERNELS))}")
    return kernel


def measurement_widths(n: int) -> tuple[int, ...]:
    """Layer widths at which :func:`gram_kernel_for` times the kernels for ``n`` samples: 1024,
    4096 and 16384 (a CNN's range; the standard workload's are 4096–16384), above ``n = 256`` scaled by
    ``(256/n)²`` (at least 64) so that a round costs no more flops than at ``n = 256``."""
    scale = min(1.0, 256 * 256 / (n * n))
    return tuple(max(64, int(p * scale)) for p in (1024, 4096, 16384))


def measure_gram_kernels(n: int, dtype=np.float32, widths: Sequence[int] = (1024, 4096, 16384), repeats: int = 3) -> dict[str, float]:
    """Seconds each Gram kernel takes for one ``n × p`` Gram at each of ``widths`` (summed), the
    best of ``repeats`` rounds, on one BLAS thread (the engine's pool gives each Gram one), the
    kernels in alternating order. The BLAS thread limit is restored on return."""
    rng = np.random.default_rng(0)
    xs = [rng.random((n, p), dtype=np.float32).astype(dtype, copy=False) for p in widths]  # ≥ 0, as after a ReLU
    names = list(GRAM_KERNELS)
    best = dict.fromkeys(names, np.inf)
    with single_blas_thread():
        for name in names:  # warm-up: BLAS buffers, pages of the outputs
            GRAM_KERNELS[name](xs[0])
        for r in range(repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                for x in xs:
                    GRAM_KERNELS[name](x)
                best[name] = min(best[name], time.perf_counter() - start)
    return best


_MEASURING = threading.Lock()  # one measurement at a time: concurrent ones would time each other


@functools.cache
def _fastest_gram_kernel(n: int, dtype_name: str) -> str:
    seconds = measure_gram_kernels(n, np.dtype(dtype_name), measurement_widths(n), repeats=2)
    return min(seconds, key=seconds.get)


def gram_kernel_for(n: int, dtype=np.float32) -> str:
    """The name of the fastest Gram kernel for ``n`` samples in ``dtype`` on this machine, by
    :func:`measure_gram_kernels` at :func:`measurement_widths` (best of 2 rounds, a fraction of a
    second), measured once per process for each ``(n, dtype)``. Changes no process-wide setting."""
    with _MEASURING:
        return _fastest_gram_kernel(int(n), np.dtype(dtype).name)


@functools.cache
def _upper(n: int) -> np.ndarray:
    """Flat positions of the entries above the diagonal of an ``n × n`` matrix, row by row."""
    i, j = np.triu_indices(n, 1)
    return i * n + j


def gram_matrix(row, n: int):
    """The symmetric ``(n, n)`` U-centred Gram (zero diagonal) from its row of :class:`BatchGrams`
    (numpy or torch)."""
    full = row.new_zeros(n * n) if _is_torch(row) else np.zeros(n * n, dtype=row.dtype)
    full[_upper(n)] = row  # a torch row takes the numpy positions as an index too
    full = full.reshape(n, n)
    return full + full.T


def _gram_numpy(x, dtype, out: np.ndarray, kernel: str = "syrk") -> tuple[float, bool]:
    """One layer: ``x (n, ...)`` → the entries of Ũ(X Xᵀ) above its diagonal, row by row, in
    ``out (n(n−1)/2,)``; ``X Xᵀ`` by the Gram kernel named ``kernel`` (:data:`GRAM_KERNELS`).

    Returns ``(HSIC(K, K)·n(n−3), nonconstant)``: ‖Ũ(K)‖²_F (twice the upper entries' squares,
    the diagonal being 0) summed in float64 from the stored (rounded) entries.
    """
    x = _flatten(x, dtype)
    n = x.shape[0]
    upper = u_centre(GRAM_KERNELS[kernel](x)).reshape(-1)[_upper(n)]
    out[...] = upper
    if out.dtype != np.float64:
        upper[...] = out  # the stored (rounded) entries, in float64
    return 2.0 * float(np.dot(upper, upper)), _is_nonconstant(x)


def _grams_torch(layers, dtype):
    """The torch backend of :func:`_gram_numpy` for a list of layers (any device): layers of the
    same width in one batched product, centred in float64 on the device. Returns, without waiting
    for the device, ``rows (L, n(n−1)/2)`` and float64 ``stats (2, L)`` there: each layer's
    ``self_hsic·n(n−3)``, and 1 if it is nonconstant, else 0."""
    import torch

    xs = [_flatten(x if _is_torch(x) else torch.from_numpy(np.asarray(x)), dtype) for x in layers]
    n = xs[0].shape[0]
    device = xs[0].device
    upper = torch.from_numpy(_upper(n)).to(device, non_blocking=True)
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
        k.diagonal(dim1=1, dim2=2).zero_()  # u_centre's steps, batched on the device
        u = u_centring_offsets(k.sum(2), n)
        k -= u[:, :, None] + u[:, None, :]
        k.diagonal(dim1=1, dim2=2).zero_()
        rounded = k.view(len(idx), n * n)[:, upper].to(xs[0].dtype)
        rows.append(rounded)
        self_hsic.append(2 * rounded.double().square().sum(1))
        nonconstant.append((x != x[:, :, :1]).flatten(1).any(1))
    rows = torch.cat(rows)
    stats = torch.stack([torch.cat(self_hsic), torch.cat(nonconstant).double()])
    order = [i for idx in widths.values() for i in idx]
    if order != sorted(order):  # back to the layers' order (the index is copied without waiting)
        inverse = torch.from_numpy(np.argsort(order)).to(device, non_blocking=True)
        rows, stats = rows[inverse], stats[:, inverse]
    return rows, stats


def _feature_parts(p: int, device) -> int:
    """Slices of the feature axis whose Grams are summed (in float64), on a GPU: one ``n × n``
    Gram is too few output tiles to keep the chip busy; the largest divisor of ``p`` up to
    ``min(32, p // 512)``. One on a CPU."""
    if device.type == "cpu":
        return 1
    return max((d for d in range(1, min(32, p // 512) + 1) if p % d == 0), default=1)


def u_centred_gram(x, dtype=np.float32):
    """The U-centred linear Gram matrix ``Ũ(X Xᵀ) (n, n)`` of one layer's minibatch ``x (n, ...)``
    (numpy or torch, flattened per sample) in ``dtype`` (float32 or float64): zero diagonal, rows
    and columns sum to 0. Checked as :meth:`BatchGrams.from_layers` checks its layers.
    """
    backend = "torch" if _is_torch(x) else "numpy"
    grams = BatchGrams.from_layers([x], dtype, threads=1, backend=backend, kernel="syrk")
    return gram_matrix(grams.grams[0], grams.n)


def _is_nonconstant(x) -> bool:
    """Whether the rows of ``x (n, p)`` are not all identical (else every centred Gram is 0);
    rows 0 and 1 differ for almost every real layer, sparing the full pass."""
    return bool((x[1] != x[0]).any() or (x != x[:1]).any())


@dataclass
class BatchGrams:
    """The U-centred Grams of one model for one minibatch, each as the row of its entries above
    the diagonal, ``G (L, n(n−1)/2)`` (the Grams are symmetric with a zero diagonal), so that
    ``HSIC(K_i, L_j) = 2 G_i · H_j / (n(n−3))`` (:func:`gram_matrix` gives a Gram back);
    ``self_hsic`` are the ``(L,)`` HSIC(K, K) values (float64), ``nonconstant`` flags layers
    whose activations vary within the batch.
    """

    grams: object
    n: int
    self_hsic: np.ndarray
    nonconstant: np.ndarray

    @classmethod
    def from_layers(cls, layers: Sequence, dtype=np.float32, *, threads: int | None = None, backend: str | None = None, kernel: str = "auto") -> "BatchGrams":
        """The Grams of every layer ``(n, ...)`` (numpy or torch, the same ``n`` samples) of one
        minibatch, in float32 (default) or float64; self-HSIC is summed in float64 either way.

        ``threads``: Grams computed in parallel, one BLAS thread each (default: every CPU); ``1``
        computes them in turn without touching the BLAS thread count (what a Dask task does).
        ``backend``: ``"numpy"`` or ``"torch"``; default torch for tensors on an accelerator.
        ``kernel``: the numpy backend's Gram kernel, a name in :data:`GRAM_KERNELS` or ``"auto"``
        (the fastest here, :func:`gram_kernel_for`); the torch backend has one.
        """
        return cls.from_models([layers], dtype, threads=threads, backend=backend, kernel=kernel)[0]

    @classmethod
    def from_models(cls, models: Sequence[Sequence], dtype=np.float32, *, threads: int | None = None, backend: str | None = None, kernel: str = "auto") -> list["BatchGrams"]:
        """:meth:`from_layers` for several models' layers of one minibatch at once (one
        parallel sweep over all their layers, largest first, instead of one per model)."""
        _check_kernel(kernel)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise EstimatorError(f"dtype must be float32 or float64, got {dtype}")
        if any(len(layers) == 0 for layers in models):
            raise EstimatorError("no layers given")
        n = models[0][0].shape[0]
        for m, layers in enumerate(models):
            for i, x in enumerate(layers):
                if x.shape[0] != n:
                    if m > 0 and i == 0:
                        raise EstimatorError(f"model a's minibatch has {n} samples and model b's {x.shape[0]}; both must hold the same samples")
                    raise EstimatorError(f"layer {i} has {x.shape[0]} samples but layer 0 has {n}; every layer of a batch needs the same samples")
        if n < MIN_BATCH:
            raise EstimatorError(
                f"a minibatch of {n} samples is too small: the unbiased HSIC estimator needs at "
                f"least {MIN_BATCH} (use a larger batch size)"
            )
        flat = [x for layers in models for x in layers]
        edges = np.cumsum([0] + [len(layers) for layers in models])
        if backend is None:
            backend = "torch" if any(_is_torch(x) and x.device.type != "cpu" for x in flat) else "numpy"
        if backend == "torch":
            import torch

            torch_grams = [_grams_torch(layers, dtype) for layers in models]
            grams = [rows for rows, _ in torch_grams]
            # one copy to the host (one wait for the device)
            self_hsic, nonconstant = torch.cat([stats for _, stats in torch_grams], 1).cpu().numpy()
        elif backend == "numpy":
            flat = [x.detach().cpu().numpy() if _is_torch(x) else x for x in flat]
            if kernel == "auto":
                kernel = gram_kernel_for(n, dtype)  # before the pool: measured on a quiet machine
            rows = np.empty((len(flat), n * (n - 1) // 2), dtype=dtype)
            self_hsic = np.empty(len(flat))
            nonconstant = np.empty(len(flat), bool)

            def one(i):
                self_hsic[i], nonconstant[i] = _gram_numpy(flat[i], dtype, rows[i], kernel)

            threads = thread_count(threads)
            if threads == 1 or len(flat) == 1:
                for i in range(len(flat)):
                    one(i)
            else:
                order = sorted(range(len(flat)), key=lambda i: -int(np.prod(flat[i].shape[1:])))
                with single_blas_thread(), thread_pool(threads) as pool:
                    list(pool.map(one, order))
            grams = [rows[i:j] for i, j in zip(edges, edges[1:])]
        else:
            raise EstimatorError(f"backend must be 'numpy' or 'torch', got {backend!r}")
        self_hsic /= n * (n - 3)
        out = [cls(g, n, self_hsic[i:j], nonconstant[i:j] > 0) for g, i, j in zip(grams, edges, edges[1:])]
        return _require_finite(out, models, dtype)
