"""Orthogonal Procrustes distance (Ding et al. 2021)."""

from __future__ import annotations

import math

import numpy as np

from layersim.metrics._common import _pair


def _compress(x: np.ndarray) -> np.ndarray:
    """``(n, p)`` → ``(n, min(n, p))`` with the same Gram ``x xᵀ`` (U·S of the thin SVD)."""
    if x.shape[1] <= x.shape[0]:
        return x
    U, s, _ = np.linalg.svd(x, full_matrices=False)
    return U * s


def procrustes(X, Y, *, sqrt: bool = False) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021, Sec. 2).

    Centre X and Y, scale each to unit Frobenius norm, then ``d²(X, Y) = min_Q ‖X − YQ‖²_F =
    2 − 2‖XᵀY‖_*`` over orthogonal ``Q`` (the narrower input zero-padded; docs/metrics.md).

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
    sqrt : bool
        Return ``d`` (a metric: symmetric, triangle inequality) instead of ``d²``.

    Returns
    -------
    float
        Distance in [0, 2] (``d²``) or [0, √2] (``d``); 0 for identical inputs. Invariant to
        orthogonal maps, isotropic scaling and shifts of either input.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 5))
    >>> q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> procrustes(x, 2.0 * x @ q - 1.0) < 1e-20
    True
    """
    X, Y = _pair(X, Y, why="the Procrustes distance", centred=True)
    X, Y = _compress(X / np.linalg.norm(X)), _compress(Y / np.linalg.norm(Y))
    width = max(X.shape[1], Y.shape[1])
    X, Y = (np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in (X, Y))  # zero columns to one width
    U, _, Vt = np.linalg.svd(X.T @ Y)
    d2 = float(np.linalg.norm(X @ (U @ Vt) - Y) ** 2)  # minimiser Q = U Vᵀ of ‖XQ − Y‖_F
    return math.sqrt(d2) if sqrt else d2
