"""Similarity and distance measures between two representations of the same samples.

Every metric is a pure function of two arrays ``X (n, p)`` and ``Y (n, q)`` whose rows are the
same ``n`` samples in the same order (numpy arrays or torch tensors; arrays with more
dimensions are flattened per sample, a 1-D array is one feature). Everything is computed in
float64. Formulas, sources and invariances are in each docstring and in ``docs/metrics.md``.

Scalar metrics return plain floats. :func:`cca`, :func:`svcca`, :func:`pwcca` and
:func:`subspace_match` return small frozen dataclasses that carry metadata (how many
directions were kept, whether a side was reduced). :data:`METRICS` maps the names the
workflow uses to functions ``(X, Y) -> float``; :data:`METRIC_KIND` says whether each is a
similarity or a distance.

The CCA family needs more samples than directions. A side with ``p ≥ n`` features is reduced
by SVD to its top ``max_dims`` directions (default ``⌊(n − 1)/2⌋``, so that the two sides fit
together in the ``n − 1`` dimensions of centred sample space) and the result says so; with
fewer than 3 samples no reduction helps and a :class:`TooFewSamplesError` is raised. When the
kept directions still total more than ``n − 1``, some canonical correlations are 1 by
dimension counting alone and a :class:`DegenerateCCAWarning` says how many.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError

__all__ = [
    "METRICS", "METRIC_KIND", "CCAResult", "SVCCAResult", "PWCCAResult", "SubspaceMatchResult",
    "MetricInputError", "SampleMismatchError", "TooFewSamplesError", "NonFiniteInputError",
    "ConstantInputError", "InvalidParameterError", "DegenerateCCAWarning",
    "linear_gram", "rbf_gram", "cka_from_gram", "linear_cka", "rbf_cka", "cca", "svcca", "pwcca",
    "procrustes", "subspace_match", "jsd", "prediction_disagreement", "accuracy_difference",
    "linear_probe_accuracy",
]

_EPS = np.finfo(np.float64).eps
_RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero (rank)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class MetricInputError(LayersimError):
    """Input that a metric cannot use (a ``ValueError``)."""


class SampleMismatchError(MetricInputError):
    """X and Y do not hold the same number of samples."""


class TooFewSamplesError(MetricInputError):
    """Too few samples for the estimator."""


class NonFiniteInputError(MetricInputError):
    """An input contains NaN or infinite values."""


class ConstantInputError(MetricInputError):
    """An input is constant across samples, so the metric is undefined (0/0)."""


class InvalidParameterError(MetricInputError):
    """A keyword argument is outside its valid range."""


class DegenerateCCAWarning(UserWarning):
    """More CCA directions than centred samples: some correlations are 1 by construction."""


# ---------------------------------------------------------------------------------------------
# Shared helpers: arrays, validation, centring, Grams
# ---------------------------------------------------------------------------------------------


def _as_matrix(x, name: str) -> np.ndarray:
    """Any ``(n, ...)`` numpy array or torch tensor → a float64 ``(n, p)`` numpy array."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise MetricInputError(f"{name} is a scalar; expected an array of shape (n_samples, ...)")
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        raise MetricInputError(f"{name} has no features (shape {x.shape})")
    n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    if n_nan or n_inf:
        raise NonFiniteInputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values (of {x.size}); "
            "remove or impute them before comparing representations"
        )
    return x


def _pair(X, Y, *, min_samples: int = 2, why: str = "this metric"):
    """Validate and convert a pair of representations of the same samples."""
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise SampleMismatchError(
            f"X has {X.shape[0]} samples and Y has {Y.shape[0]}; both must hold the same "
            "samples in the same order (rows are samples)"
        )
    if X.shape[0] < min_samples:
        raise TooFewSamplesError(f"{why} needs at least {min_samples} samples; got {X.shape[0]}")
    return X, Y


def _centre(x: np.ndarray, name: str) -> np.ndarray:
    """Subtract the column means; refuse an input whose rows are all identical."""
    constant = np.ptp(x, axis=0) == 0
    if constant.all():
        raise ConstantInputError(
            f"{name} is constant across samples (every row is identical), so its similarity "
            "to anything is undefined (0/0); check the layer's activations"
        )
    xc = x - x.mean(axis=0)
    xc[:, constant] = 0.0  # exact zeros, not rounding residue
    return xc


def _check_positive(value: float, name: str, what: str) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a positive number ({what}); got {value!r}")


def linear_gram(X) -> np.ndarray:
    """Linear Gram matrix ``K = X Xᵀ`` (Kornblith et al. 2019, Sec. 3).

    Parameters
    ----------
    X : array ``(n, ...)``
        Activations, flattened per sample.

    Returns
    -------
    ndarray ``(n, n)``
        float64; invariant to orthogonal maps of X's features.
    """
    X = _as_matrix(X, "X")
    return X @ X.T


def rbf_gram(X, *, threshold: float = 1.0) -> np.ndarray:
    """Gaussian (RBF) Gram matrix with the median bandwidth of Kornblith et al. (2019).

    ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))`` with ``σ² = threshold² · median_ij ‖x_i − x_j‖²``,
    the median taken over all ``n²`` entries, zero diagonal included (as in Kornblith et al.'s
    reference code, where ``σ = threshold · sqrt(median)``).

    Parameters
    ----------
    X : array ``(n, ...)``
        Activations, flattened per sample.
    threshold : float
        Bandwidth as a fraction of the median distance; must be positive.

    Returns
    -------
    ndarray ``(n, n)``
        Invariant to orthogonal maps, isotropic scaling and shifts of ``X``.
    """
    _check_positive(threshold, "threshold", "the RBF bandwidth as a fraction of the median distance")
    return _rbf_gram(_as_matrix(X, "X"), threshold, "X")


def _rbf_gram(X: np.ndarray, threshold: float, name: str) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# CKA
# ---------------------------------------------------------------------------------------------


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


def _u_centre(K: np.ndarray) -> np.ndarray:
    """U-centring (Székely & Rizzo 2014): ⟨Ũ(K), Ũ(L)⟩ = n(n−3) · HSIC₁ of Song et al. (2012)."""
    n = K.shape[0]
    K = K.copy()
    np.fill_diagonal(K, 0.0)
    rows = K.sum(axis=0)
    U = K - rows[None, :] / (n - 2) - rows[:, None] / (n - 2) + rows.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(U, 0.0)
    return U


def _h_centre(K: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I − 11ᵀ/n``."""
    return K - K.mean(axis=0)[None, :] - K.mean(axis=1)[:, None] + K.mean()


def cka_from_gram(K, L, *, debiased: bool = False) -> float:
    """Centred kernel alignment of two Gram matrices (Kornblith et al. 2019, Eq. 4).

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` with the biased estimator
    ``HSIC₀ = tr(KHLH)/(n−1)²`` (Gretton et al. 2005) or, with ``debiased=True``, the unbiased
    ``HSIC₁`` of Song et al. (2012), computed by U-centring. The normalising constants cancel.

    Parameters
    ----------
    K, L : array ``(n, n)``
        Symmetric Gram matrices of the same ``n`` samples (``n ≥ 2``; ``n ≥ 4`` if debiased).
    debiased : bool
        Use the unbiased HSIC estimator.

    Returns
    -------
    float
        In [0, 1] when biased; the debiased value can be slightly negative. Invariant to
        scaling either Gram and to adding ``a1ᵀ + 1aᵀ`` to it (so to shifts of the features of a
        linear Gram); for linear Grams, to orthogonal maps and isotropic scaling of the features.

    Raises
    ------
    ConstantInputError
        If a centred Gram is zero (a constant representation).

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> round(cka_from_gram(x @ x.T, x @ x.T), 12)
    1.0
    """
    K, L = _gram_pair(K, L, 4 if debiased else 2, "debiased CKA" if debiased else "CKA")
    centre = _u_centre if debiased else _h_centre
    Kc, Lc = centre(K), centre(L)
    kk, ll = float(np.vdot(Kc, Kc)), float(np.vdot(Lc, Lc))
    n = K.shape[0]
    for name, self_hsic, g in (("K", kk, K), ("L", ll, L)):
        if self_hsic <= (64 * n * _EPS * np.linalg.norm(g)) ** 2:
            raise ConstantInputError(
                f"{name} has (numerically) zero centred self-similarity, so CKA is undefined; "
                "the representation is constant across samples"
            )
    return float(np.vdot(Kc, Lc)) / math.sqrt(kk * ll)


def linear_cka(X, Y, *, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019), in feature space.

    ``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` for column-centred X, Y (Kornblith et al. 2019,
    Eq. 5). With ``debiased=True`` each ``‖AᵀB‖²_F`` is replaced by Song et al.'s (2012)
    unbiased HSIC₁ of the linear Grams, which for centred data is (times ``n(n−3)``, a constant
    that cancels) ``‖AᵀB‖²_F − n/(n−2)·dₐᵀd_b + ‖A‖²_F‖B‖²_F/((n−1)(n−2))`` where ``dₐ`` holds
    the squared row norms of A. When ``p`` or ``q`` exceeds ``n`` the same quantities are
    taken from the ``(n, n)`` Grams.

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
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
    X, Y = _pair(X, Y, min_samples=4 if debiased else 2, why="debiased CKA" if debiased else "CKA")
    X, Y = _centre(X, "X"), _centre(Y, "Y")
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

    ``CKA(rbf_gram(X, threshold), rbf_gram(Y, threshold))``; see :func:`rbf_gram` for the
    bandwidth ``σ² = threshold² · median ‖x_i − x_j‖²`` and :func:`cka_from_gram`.

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
    threshold : float
        Bandwidth as a fraction of the median distance (positive).
    debiased : bool
        Use the unbiased HSIC estimator.

    Returns
    -------
    float
        Similarity, 1 for identical inputs. Invariant to orthogonal maps, isotropic scaling and
        shifts (the bandwidth scales with the data); not to invertible linear maps.
    """
    _check_positive(threshold, "threshold", "the RBF bandwidth as a fraction of the median distance")
    X, Y = _pair(X, Y, min_samples=4 if debiased else 2, why="debiased CKA" if debiased else "CKA")
    return cka_from_gram(_rbf_gram(X, threshold, "X"), _rbf_gram(Y, threshold, "Y"), debiased=debiased)


# ---------------------------------------------------------------------------------------------
# CCA family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlations of two representations and their summaries.

    Attributes
    ----------
    rho : ndarray
        Canonical correlations in decreasing order, ``min(dims)`` of them, in [0, 1].
    mean_rho : float
        ``mean(rho)``, the ρ̄ of Raghu et al. (2017).
    r2 : float
        ``R²_CCA = mean(rho²)`` (Kornblith et al. 2019, Table 1).
    dims : tuple of int
        Directions of X and Y that entered the CCA (numerical ranks after any reduction).
    reduced_to : tuple of (int or None)
        For each side, the number of SVD directions it was reduced to because it had
        ``p ≥ n`` features, or None if it was not reduced.
    n_samples : int
    """

    rho: np.ndarray
    mean_rho: float
    r2: float
    dims: tuple[int, int]
    reduced_to: tuple[int | None, int | None]
    n_samples: int


@dataclass(frozen=True)
class SVCCAResult:
    """SVCCA similarity (``value = mean(rho)``) with the directions kept on each side."""

    value: float
    rho: np.ndarray
    dims: tuple[int, int]
    reduced_to: tuple[int | None, int | None]
    variance: float
    n_samples: int


@dataclass(frozen=True)
class PWCCAResult:
    """PWCCA similarity ``value = Σ wᵢ ρᵢ`` with the projection weights ``w`` (sum 1)."""

    value: float
    rho: np.ndarray
    weights: np.ndarray
    dims: tuple[int, int]
    reduced_to: tuple[int | None, int | None]
    n_samples: int


def _side_basis(xc: np.ndarray, *, variance: float = 1.0, max_dims: int | None = None):
    """Orthonormal basis ``(n, k)`` of the top directions of centred ``xc`` and its reduction.

    Keeps the fewest directions whose squared singular values reach ``variance`` of the total,
    at most the numerical rank; a side with ``p ≥ n`` keeps at most ``max_dims``.
    """
    n, p = xc.shape
    U, s, _ = np.linalg.svd(xc, full_matrices=False)
    rank = int(np.sum(s > s[0] * _RANK_RTOL))
    explained = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
    k = min(rank, int(np.searchsorted(explained, variance - 1e-12)) + 1)
    reduced = None
    if p >= n:
        k = reduced = min(k, max_dims)
    return U[:, :k], reduced


def _cca_core(X, Y, *, variance=1.0, max_dims=None):
    """Centre, reduce, and return the orthonormal bases, the SVD of ``UxᵀUy`` and metadata."""
    X, Y = _pair(X, Y, min_samples=3, why="CCA (centred, with at least one direction per side)")
    n = X.shape[0]
    if max_dims is None:
        max_dims = (n - 1) // 2
    elif not (isinstance(max_dims, (int, np.integer)) and 1 <= max_dims < n):
        raise InvalidParameterError(f"max_dims must be an integer in [1, n) = [1, {n}); got {max_dims!r}")
    Xc, Yc = _centre(X, "X"), _centre(Y, "Y")
    (Ux, rx), (Uy, ry) = (_side_basis(a, variance=variance, max_dims=max_dims) for a in (Xc, Yc))
    kx, ky = Ux.shape[1], Uy.shape[1]
    if kx + ky > n - 1:
        warnings.warn(
            f"CCA of {kx} and {ky} directions on {n} samples: at least {kx + ky - (n - 1)} "
            "canonical correlation(s) equal 1 by dimension counting alone; use more samples or "
            "fewer directions (max_dims, or svcca's variance)",
            DegenerateCCAWarning,
            stacklevel=3,
        )
    P, rho, _ = np.linalg.svd(Ux.T @ Uy, full_matrices=False)
    return Xc, Ux, P, np.clip(rho, 0.0, 1.0), (kx, ky), (rx, ry), n


def cca(X, Y, *, max_dims: int | None = None) -> CCAResult:
    """Canonical correlation analysis (Hotelling 1936), computed stably (Björck & Golub 1973).

    The canonical correlations are the singular values of ``UxᵀUy`` where ``Ux``, ``Uy`` are
    orthonormal bases (from the SVD) of the column-centred X and Y, i.e. the cosines of the
    principal angles between the two centred column spaces.

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
        The same ``n ≥ 3`` samples.
    max_dims : int, optional
        For a side with ``p ≥ n`` features: keep its top ``max_dims`` SVD directions
        (default ``⌊(n − 1)/2⌋``), recorded in ``reduced_to``.

    Returns
    -------
    CCAResult
        ``rho``, ``mean_rho``, ``r2`` (similarities, 1 for identical inputs) and metadata.
        Invariant to invertible linear maps and shifts of either input (a side reduced
        because ``p ≥ n`` only to orthogonal maps, isotropic scaling and shifts).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 3))
    >>> res = cca(x, x @ rng.normal(size=(3, 3)) + 5.0)
    >>> round(res.mean_rho, 10), res.dims, res.reduced_to
    (1.0, (3, 3), (None, None))
    """
    _, _, _, rho, dims, reduced, n = _cca_core(X, Y, max_dims=max_dims)
    return CCAResult(rho, float(rho.mean()), float(np.mean(rho**2)), dims, reduced, n)


def svcca(X, Y, *, variance: float = 0.99, max_dims: int | None = None) -> SVCCAResult:
    """SVCCA (Raghu et al. 2017): SVD each side to the directions holding ``variance`` of its
    variance, then the mean canonical correlation of the reduced representations.

    Variance is measured by squared singular values of the centred data (PCA explained
    variance); each side keeps the fewest top directions whose share reaches ``variance``.

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
    variance : float
        Fraction of variance kept, in (0, 1]; 1 keeps every direction (plain CCA).
    max_dims : int, optional
        Cap for a side with ``p ≥ n`` (see :func:`cca`).

    Returns
    -------
    SVCCAResult
        ``value`` (similarity, 1 for identical inputs), ``rho`` and the directions kept.
        Invariant to orthogonal maps, isotropic scaling and shifts; to invertible linear maps
        only when ``variance = 1``.
    """
    if not (isinstance(variance, (int, float, np.floating)) and 0 < variance <= 1):
        raise InvalidParameterError(f"variance must be a fraction in (0, 1]; got {variance!r}")
    _, _, _, rho, dims, reduced, n = _cca_core(X, Y, variance=variance, max_dims=max_dims)
    return SVCCAResult(float(rho.mean()), rho, dims, reduced, float(variance), n)


def pwcca(X, Y, *, max_dims: int | None = None) -> PWCCAResult:
    """Projection-weighted CCA (Morcos et al. 2018, Eqs. 2–3), with centred weights.

    ``PWCCA = Σᵢ wᵢ ρᵢ``, ``wᵢ = αᵢ / Σⱼ αⱼ``, ``αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩|`` where ``hᵢ`` are X's
    unit-norm canonical variates and ``xⱼ`` the *centred* neuron activation vectors of X.
    (A widely copied implementation takes the weights from uncentred activations, which makes
    PWCCA depend on shifts; centring removes that.) Asymmetric: weights come from X.

    Parameters
    ----------
    X : array ``(n, p, ...)``
        The representation whose neurons weight the correlations.
    Y : array ``(n, q, ...)``
    max_dims : int, optional
        Cap for a side with ``p ≥ n`` (see :func:`cca`).

    Returns
    -------
    PWCCAResult
        ``value`` (similarity, 1 for identical inputs), ``rho``, ``weights`` and metadata.
        Invariant to shifts and isotropic scaling of either input, to permutations and sign
        flips of X's neurons and to invertible linear maps of Y; not to rotations of X.
    """
    Xc, Ux, P, rho, dims, reduced, n = _cca_core(X, Y, max_dims=max_dims)
    H = Ux @ P[:, : len(rho)]  # (n, k) unit-norm canonical variates of X
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    w = alpha / alpha.sum()
    return PWCCAResult(float(w @ rho), rho, w, dims, reduced, n)


# ---------------------------------------------------------------------------------------------
# Procrustes
# ---------------------------------------------------------------------------------------------


def _compress(x: np.ndarray) -> np.ndarray:
    """``(n, p)`` → ``(n, min(n, p))`` with the same Gram ``x xᵀ`` (U·S of the thin SVD)."""
    if x.shape[1] <= x.shape[0]:
        return x
    U, s, _ = np.linalg.svd(x, full_matrices=False)
    return U * s


def procrustes(X, Y, *, sqrt: bool = False) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021, Sec. 2).

    Centre X and Y, scale each to unit Frobenius norm, then
    ``d²(X, Y) = min_Q ‖X − YQ‖²_F = 2 − 2‖XᵀY‖_*`` over orthogonal ``Q`` (the narrower
    input zero-padded). It is computed as the residual of the optimal ``Q``, which is exact
    near 0 where ``2 − 2‖XᵀY‖_*`` would lose digits to cancellation.

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
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
    X, Y = _pair(X, Y, why="the Procrustes distance")
    X, Y = _centre(X, "X"), _centre(Y, "Y")
    X, Y = _compress(X / np.linalg.norm(X)), _compress(Y / np.linalg.norm(Y))
    width = max(X.shape[1], Y.shape[1])
    X = np.pad(X, ((0, 0), (0, width - X.shape[1])))
    Y = np.pad(Y, ((0, 0), (0, width - Y.shape[1])))
    U, _, Vt = np.linalg.svd(X.T @ Y)
    d2 = float(np.linalg.norm(X @ (U @ Vt) - Y) ** 2)  # minimiser Q = U Vᵀ of ‖XQ − Y‖_F
    return math.sqrt(d2) if sqrt else d2


# ---------------------------------------------------------------------------------------------
# Subspace match
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubspaceMatchResult:
    """Maximum ε-approximate match ``(X*, Y*)`` of Wang et al. (2018).

    Attributes
    ----------
    x_neurons, y_neurons : tuple of int
        Column indices of the neurons of X and Y in the maximum match.
    similarity : float
        ``(|X*| + |Y*|) / (p + q)``, the share of all neurons that are in the match.
    epsilon : float
    """

    x_neurons: tuple[int, ...]
    y_neurons: tuple[int, ...]
    similarity: float
    epsilon: float


def _far_from_span(Z: np.ndarray, B: np.ndarray, epsilon: float) -> np.ndarray:
    """Columns ``z`` of Z with ``dist(z, span B) > ε‖z‖`` (B's columns need not be independent)."""
    norms = np.linalg.norm(B, axis=0)
    B = B[:, norms > 0] / norms[norms > 0]
    if B.shape[1]:
        U, s, _ = np.linalg.svd(B, full_matrices=False)
        basis = U[:, s > s[0] * _RANK_RTOL]
        residual = Z - basis @ (basis.T @ Z)
    else:
        residual = Z
    znorm = np.linalg.norm(Z, axis=0)
    return np.linalg.norm(residual, axis=0) > (epsilon + 1e-9) * znorm  # 1e-9: rounding slack


def subspace_match(X, Y, *, epsilon: float) -> SubspaceMatchResult:
    """Maximum ε-approximate subspace match of neuron sets (Wang et al. 2018, Defs. 1–3, Alg. 1).

    Neuron ``j`` of X has activation vector ``z_j = X[:, j]`` (raw, not centred, as in the
    paper). ``(A, B)`` is an ε-match if every ``z_a`` (a ∈ A) lies within ``ε‖z_a‖`` of
    ``span{z_b : b ∈ B}`` and vice versa; ``ε = 0`` is the exact match
    ``span(z_A) = span(z_B)``. Unions of ε-matches are ε-matches, so a maximum match exists;
    it is found by repeatedly removing, from all neurons, those too far from the other side's
    span until nothing changes. Criticised by Johnson (2019): identical networks' outputs are
    compatible with no hidden-layer match at all (see ``docs/metrics.md``).

    Parameters
    ----------
    X : array ``(n, p, ...)``
    Y : array ``(n, q, ...)``
        Activations of the same ``n`` inputs; columns are neurons.
    epsilon : float
        Tolerance in [0, 1); 0 is the exact match (up to a relative rounding slack of 1e-9).

    Returns
    -------
    SubspaceMatchResult
        The neurons in the maximum match and the similarity ``(|X*| + |Y*|)/(p + q)`` (1 for
        identical inputs). Invariant to permutations and non-zero rescaling of individual
        neurons and to an invertible map of *all* neurons of a side; not to shifts.

    Examples
    --------
    >>> x = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    >>> subspace_match(x, x[:, ::-1] * 3.0, epsilon=0.0).similarity
    1.0
    """
    if not (isinstance(epsilon, (int, float, np.floating)) and 0 <= epsilon < 1):
        raise InvalidParameterError(f"epsilon must be in [0, 1) (0 = exact match); got {epsilon!r}")
    X, Y = _pair(X, Y, min_samples=1, why="subspace match")
    xs, ys = np.arange(X.shape[1]), np.arange(Y.shape[1])
    while True:
        new_xs = xs[~_far_from_span(X[:, xs], Y[:, ys], epsilon)]
        new_ys = ys[~_far_from_span(Y[:, ys], X[:, new_xs], epsilon)]
        if len(new_xs) == len(xs) and len(new_ys) == len(ys):
            break
        xs, ys = new_xs, new_ys
    similarity = (len(xs) + len(ys)) / (X.shape[1] + Y.shape[1])
    return SubspaceMatchResult(tuple(xs.tolist()), tuple(ys.tolist()), similarity, float(epsilon))


# ---------------------------------------------------------------------------------------------
# Functional measures on model outputs
# ---------------------------------------------------------------------------------------------


def _distributions(P, name: str, from_logits: bool) -> np.ndarray:
    P = _as_matrix(P, name)
    if from_logits:
        P = np.exp(P - P.max(axis=1, keepdims=True))
        return P / P.sum(axis=1, keepdims=True)
    if (P < 0).any():
        raise MetricInputError(f"{name} has negative entries; pass probabilities (or from_logits=True)")
    worst = float(np.max(np.abs(P.sum(axis=1) - 1.0)))
    if worst > 1e-6:
        raise MetricInputError(
            f"the rows of {name} must sum to 1 (largest deviation {worst:.3g}); pass "
            "probabilities, or logits with from_logits=True"
        )
    return P


def jsd(P, Q, *, base: float = 2.0, from_logits: bool = False) -> float:
    """Mean Jensen–Shannon divergence between two models' predictive distributions.

    ``JSD(p, q) = H(m) − (H(p) + H(q))/2`` with ``m = (p + q)/2`` (Lin 1991), in units of
    ``log(base)`` (base 2: bits, in [0, 1]), averaged over the ``n`` samples.

    Parameters
    ----------
    P, Q : array ``(n, C)``
        Class probabilities per sample (rows sum to 1), or logits with ``from_logits=True``.
    base : float
        Logarithm base (> 0, ≠ 1); 2 by default.
    from_logits : bool
        Apply a softmax to each row first.

    Returns
    -------
    float
        Distance-like, 0 for identical outputs; symmetric; invariant to a permutation of the
        samples and (with logits) to a constant added to a row.

    Examples
    --------
    >>> jsd([[1.0, 0.0]], [[0.0, 1.0]])
    1.0
    """
    _check_positive(base, "base", "the logarithm base")
    if base == 1:
        raise InvalidParameterError("base must not be 1 (log 1 = 0)")
    P, Q = _distributions(P, "P", from_logits), _distributions(Q, "Q", from_logits)
    if P.shape != Q.shape:
        raise SampleMismatchError(f"P is {P.shape} and Q is {Q.shape}; both must be (n_samples, n_classes)")
    M = 0.5 * (P + Q)

    def entropy(A):
        return -np.sum(np.where(A > 0, A * np.log(np.where(A > 0, A, 1.0)), 0.0), axis=1)

    per_sample = entropy(M) - 0.5 * (entropy(P) + entropy(Q))
    return float(np.mean(np.maximum(per_sample, 0.0)) / math.log(base))


def _predicted_labels(P, name: str) -> np.ndarray:
    if type(P).__module__.startswith("torch"):
        P = P.detach().cpu().numpy()
    P = np.asarray(P)
    if P.ndim == 1:
        return P
    if P.ndim == 2:
        return _as_matrix(P, name).argmax(axis=1)
    raise MetricInputError(f"{name} must be labels (n,) or scores (n, n_classes); got shape {P.shape}")


def prediction_disagreement(P, Q) -> float:
    """Fraction of samples on which two models predict different classes.

    Parameters
    ----------
    P, Q : array ``(n, C)`` or ``(n,)``
        Scores, probabilities or logits (the arg-max is the prediction), or predicted labels.

    Returns
    -------
    float
        In [0, 1]; 0 for identical predictions. Invariant to monotone maps of the scores.
    """
    a, b = _predicted_labels(P, "P"), _predicted_labels(Q, "Q")
    if a.shape != b.shape:
        raise SampleMismatchError(f"P has {len(a)} samples and Q has {len(b)}; they must match")
    return float(np.mean(a != b))


def accuracy_difference(P, Q, labels) -> float:
    """Absolute difference of two models' accuracies, ``|acc(P) − acc(Q)|`` (Ding et al. 2021).

    Parameters
    ----------
    P, Q : array ``(n, C)`` or ``(n,)``
        Scores or predicted labels of the two models.
    labels : array ``(n,)``
        True class labels.

    Returns
    -------
    float
        In [0, 1]; 0 for identical predictions. Invariant to monotone maps of the scores.
    """
    a, b, y = _predicted_labels(P, "P"), _predicted_labels(Q, "Q"), np.asarray(labels)
    if not (a.shape == b.shape == y.shape):
        raise SampleMismatchError(f"P, Q and labels have {len(a)}, {len(b)} and {len(y)} samples; they must match")
    return float(abs(np.mean(a == y) - np.mean(b == y)))


def linear_probe_accuracy(X, labels, *, test_fraction: float = 0.25, seed: int = 0, C: float = 1.0) -> float:
    """Test accuracy of a logistic-regression probe on frozen activations (Alain & Bengio 2016).

    A stratified split (``test_fraction`` held out, fixed by ``seed``), standardised features,
    L2-regularised multinomial logistic regression (scikit-learn, ``lbfgs``), accuracy on the
    held-out samples. Deterministic for a given ``seed``.

    Parameters
    ----------
    X : array ``(n, p, ...)``
        Activations, flattened per sample.
    labels : array ``(n,)``
        Class labels.
    test_fraction : float
        Share of samples held out, in (0, 1).
    seed : int
        Seed of the split.
    C : float
        Inverse regularisation strength (positive).

    Returns
    -------
    float
        Accuracy in [0, 1]. Invariant to invertible affine maps of X up to the regulariser.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not (isinstance(test_fraction, (int, float, np.floating)) and 0 < test_fraction < 1):
        raise InvalidParameterError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    _check_positive(C, "C", "the inverse regularisation strength")
    X, y = _as_matrix(X, "X"), np.asarray(labels)
    if y.shape != (X.shape[0],):
        raise SampleMismatchError(f"X has {X.shape[0]} samples but labels has shape {y.shape}")
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    return float(probe.fit(x_train, y_train).score(x_test, y_test))


# ---------------------------------------------------------------------------------------------
# Registry for the workflow
# ---------------------------------------------------------------------------------------------


def _cca_mean_rho(X, Y) -> float:
    return cca(X, Y).mean_rho


def _cca_r2(X, Y) -> float:
    return cca(X, Y).r2


def _svcca_value(X, Y) -> float:
    return svcca(X, Y).value


def _pwcca_value(X, Y) -> float:
    return pwcca(X, Y).value


METRICS: dict[str, Callable[..., float]] = {
    "linear_cka": linear_cka,
    "linear_cka_debiased": functools.partial(linear_cka, debiased=True),
    "rbf_cka": rbf_cka,
    "rbf_cka_debiased": functools.partial(rbf_cka, debiased=True),
    "cca_mean_rho": _cca_mean_rho,
    "cca_r2": _cca_r2,
    "svcca": _svcca_value,
    "pwcca": _pwcca_value,
    "procrustes": procrustes,
    "procrustes_sqrt": functools.partial(procrustes, sqrt=True),
}
"""Name → ``f(X, Y) -> float`` with default settings, for the workflow's ``metric`` wildcard."""

METRIC_KIND: dict[str, str] = {
    name: ("distance" if name.startswith("procrustes") else "similarity") for name in METRICS
}
"""Name → ``"similarity"`` (1 = identical) or ``"distance"`` (0 = identical)."""
