"""Centred kernel alignment (Kornblith et al. 2019): linear and RBF, biased and debiased."""

from __future__ import annotations

import math

import numpy as np

from layersim.metrics._common import (
    ConstantInputError,
    MetricInputError,
    SampleMismatchError,
    TooFewSamplesError,
    _as_matrix,
    _centre,
    _check_positive,
    _pair,
)


def linear_gram(X) -> np.ndarray:
    """Linear Gram matrix ``K = X Xᵀ`` (Kornblith et al. 2019, Sec. 3).

    Parameters
    ----------
    X : array ``(n, ...)``

    Returns
    -------
    ndarray ``(n, n)``
        float64; invariant to orthogonal maps of X's features.
    """
    X = _as_matrix(X, "X")
    return X @ X.T


def rbf_gram(X, *, threshold: float = 1.0) -> np.ndarray:
    """Gaussian (RBF) Gram matrix with the median bandwidth of Kornblith et al. (2019).

    ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))`` with ``σ² = threshold² · median_ij ‖x_i − x_j‖²`` over
    all ``n²`` entries, zero diagonal included (their reference code; docs/metrics.md).

    Parameters
    ----------
    X : array ``(n, ...)``
    threshold : float
        Bandwidth as a fraction of the median distance; must be positive.

    Returns
    -------
    ndarray ``(n, n)``
        Invariant to orthogonal maps, isotropic scaling and shifts of ``X``.
    """
    return _rbf_gram(_as_matrix(X, "X"), threshold, "X")


def _rbf_gram(X: np.ndarray, threshold: float, name: str) -> np.ndarray:
    _check_positive(threshold, "threshold", "the RBF bandwidth as a fraction of the median distance")
    X = _centre(X, name)  # distances are shift invariant; centring helps rounding
    sq_norms = np.einsum("ij,ij->i", X, X)
    sq_dist = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * (X @ X.T), 0.0)
    np.fill_diagonal(sq_dist, 0.0)
    median = np.median(sq_dist)
    if median == 0:
        raise ConstantInputError(
            f"the median squared distance between samples of {name} is 0 (more than half of the "
            "sample pairs are identical), so the RBF bandwidth is undefined; remove duplicates"
        )
    return np.exp(-sq_dist / (2.0 * threshold**2 * median))


def _gram_pair(K, L, min_samples: int, why: str):
    K, L = _as_matrix(K, "K"), _as_matrix(L, "L")
    for name, g in (("K", K), ("L", L)):
        if g.shape[0] != g.shape[1]:
            raise MetricInputError(f"{name} must be a square (n, n) Gram matrix; got shape {g.shape}")
    if K.shape != L.shape:
        raise SampleMismatchError(f"K is {K.shape} and L is {L.shape}; both must be Grams of the same samples")
    if K.shape[0] < min_samples:
        raise TooFewSamplesError(f"{why} needs at least {min_samples} samples; got {K.shape[0]}")
    return K, L


def u_centring_offsets(row_sums, n: int):
    """The offsets ``u`` of U-centring: ``Ũ_ij = K_ij − u_i − u_j`` for ``i ≠ j``.

    ``row_sums``: the row sums of Grams with a zero diagonal, over the last axis (numpy or torch,
    any leading batch axes); ``u = r/(n−2) − Σr/(2(n−1)(n−2))``.
    """
    return row_sums / (n - 2) - row_sums.sum(-1)[..., None] / (2 * (n - 1) * (n - 2))


def u_centre(k: np.ndarray) -> np.ndarray:
    """U-centring (Székely & Rizzo 2014) of a symmetric Gram ``k (n, n)``, so that
    ``⟨Ũ(K), Ũ(L)⟩ = n(n−3) · HSIC₁`` of Song et al. (2012)::

        Ũ_ij = K_ij − K_i·/(n−2) − K_·j/(n−2) + K_··/((n−1)(n−2))   (i ≠ j),   Ũ_ii = 0

    with ``diag(K)`` set to 0 first (in ``k``, in place). Returns a new float64 array, summed and
    subtracted in float64 whatever ``k``'s dtype.
    """
    np.fill_diagonal(k, 0)
    u = u_centring_offsets(k.sum(0, dtype=np.float64), k.shape[0])  # column sums = row sums (symmetric)
    centred = k.astype(np.float64)
    centred -= u[:, None]
    centred -= u[None, :]
    np.fill_diagonal(centred, 0)
    return centred


def _h_centre(K: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I − 11ᵀ/n``."""
    return K - K.mean(axis=0)[None, :] - K.mean(axis=1)[:, None] + K.mean()


def cka_from_gram(K, L, *, debiased: bool = False) -> float:
    """Centred kernel alignment of two Gram matrices (Kornblith et al. 2019, Eq. 4).

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` with the biased estimator
    ``HSIC₀ = tr(KHLH)/(n−1)²`` (Gretton et al. 2005) or, with ``debiased=True``, the unbiased
    ``HSIC₁`` of Song et al. (2012), computed by U-centring.

    Parameters
    ----------
    K, L : array ``(n, n)``
        Symmetric Gram matrices of the same ``n`` samples (``n ≥ 2``; ``n ≥ 4`` if debiased).
    debiased : bool

    Returns
    -------
    float
        In [0, 1] when biased; the debiased value can be slightly negative. Invariant to
        scaling either Gram and to adding ``a1ᵀ + 1aᵀ`` to it (so to shifts of the features of a
        linear Gram); for linear Grams, to orthogonal maps and isotropic scaling of the features.
        A zero centred Gram (a constant representation) is a :class:`ConstantInputError`.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> round(cka_from_gram(x @ x.T, x @ x.T), 12)
    1.0
    """
    K, L = _gram_pair(K, L, 4 if debiased else 2, "debiased CKA" if debiased else "CKA")
    Kc, Lc = (u_centre(K.copy()), u_centre(L.copy())) if debiased else (_h_centre(K), _h_centre(L))
    kk, ll = float(np.vdot(Kc, Kc)), float(np.vdot(Lc, Lc))
    for name, self_hsic, g in (("K", kk, K), ("L", ll, L)):
        if self_hsic <= (64 * K.shape[0] * np.finfo(np.float64).eps * np.linalg.norm(g)) ** 2:
            raise ConstantInputError(
                f"{name} has (numerically) zero centred self-similarity, so CKA is undefined; "
                "the representation is constant across samples"
            )
    return float(np.vdot(Kc, Lc)) / math.sqrt(kk * ll)


def linear_cka(X, Y, *, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019), in feature space.

    ``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` for column-centred X, Y (Kornblith et al. 2019, Eq. 5);
    with ``debiased=True`` each ``‖AᵀB‖²_F`` becomes Song et al.'s (2012) unbiased HSIC₁ of the
    linear Grams (docs/metrics.md, Debiased CKA); from the ``(n, n)`` Grams when ``p`` or ``q`` > ``n``.

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
        The same ``n`` samples (``n ≥ 2``; ``n ≥ 4`` if debiased).
    debiased : bool
        Use the unbiased HSIC estimator (the minibatch engine's estimator on one batch).

    Returns
    -------
    float
        Similarity, 1 for identical inputs. Invariant to orthogonal maps, isotropic scaling and
        shifts of either input; not to general invertible linear maps.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 8))
    >>> q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    >>> round(linear_cka(x, 3.0 * x @ q + 1.0), 10)
    1.0
    """
    X, Y = _pair(X, Y, min_samples=4 if debiased else 2, why="debiased CKA" if debiased else "CKA", centred=True)
    n = X.shape[0]
    if max(X.shape[1], Y.shape[1]) > n:
        K, L = X @ X.T, Y @ Y.T
        xy, xx, yy = np.vdot(K, L), np.vdot(K, K), np.vdot(L, L)
    else:
        xy, xx, yy = (np.linalg.norm(a.T @ b) ** 2 for a, b in ((X, Y), (X, X), (Y, Y)))
    if debiased:
        dx, dy = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)

        def unbiased(ab, da, db):
            return ab - n / (n - 2) * (da @ db) + da.sum() * db.sum() / ((n - 1) * (n - 2))

        xy, xx, yy = unbiased(xy, dx, dy), unbiased(xx, dx, dx), unbiased(yy, dy, dy)
    return float(xy / math.sqrt(xx * yy))


def rbf_cka(X, Y, *, threshold: float = 1.0, debiased: bool = False) -> float:
    """CKA with Gaussian kernels (Kornblith et al. 2019, Sec. 3 and their reference code).

    ``cka_from_gram(rbf_gram(X, threshold), rbf_gram(Y, threshold), debiased=debiased)`` (parameters there).

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
    threshold : float
    debiased : bool

    Returns
    -------
    float
        Similarity, 1 for identical inputs. Invariant to orthogonal maps, isotropic scaling and
        shifts (the bandwidth scales with the data); not to invertible linear maps.
    """
    X, Y = _pair(X, Y, min_samples=4 if debiased else 2, why="debiased CKA" if debiased else "CKA")
    return cka_from_gram(_rbf_gram(X, threshold, "X"), _rbf_gram(Y, threshold, "Y"), debiased=debiased)


def linear_hsic(X, Y) -> float:
    """Linear HSIC ``‖Y_cᵀ X_c‖²_F / (n − 1)²`` (Gretton et al. 2005; Kornblith et al. 2019,
    Table 1), unnormalised.

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
        The same ``n ≥ 2`` samples.

    Returns
    -------
    float
        Grows with the scale of either input (not 1 for identical inputs). Invariant to
        orthogonal maps and shifts of either input. An input constant across samples is a
        :class:`ConstantInputError` (as for CKA, whose numerator this is).
    """
    xc, yc = _pair(X, Y, min_samples=2, why="HSIC", centred=True)
    return float(np.sum((yc.T @ xc) ** 2) / (xc.shape[0] - 1) ** 2)
