"""The CCA family: CCA (mean ρ, R²_CCA), SVCCA and PWCCA, with the p ≥ n reduction rule."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from layersim.metrics._common import (
    _RANK_RTOL,
    DegenerateCCAWarning,
    InvalidParameterError,
    _pair,
)


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
    """SVCCA similarity (``value = mean(rho)``, ``r2 = mean(rho²)``, Kornblith et al. 2019,
    Table 1) with the directions kept on each side."""

    value: float
    rho: np.ndarray
    dims: tuple[int, int]
    reduced_to: tuple[int | None, int | None]
    variance: float
    n_samples: int
    r2: float


@dataclass(frozen=True)
class PWCCAResult:
    """PWCCA similarity ``value = Σ wᵢ ρᵢ`` with the projection weights ``w`` (sum 1)."""

    value: float
    rho: np.ndarray
    weights: np.ndarray
    dims: tuple[int, int]
    reduced_to: tuple[int | None, int | None]
    n_samples: int


def orthonormal_basis(xc: np.ndarray, *, variance: float = 1.0, max_dims: int | None = None, svd=None):
    """Orthonormal basis ``(n, k)`` of the top directions of centred ``xc`` and its reduction.

    Keeps the fewest directions whose squared singular values reach ``variance`` of the total,
    at most the numerical rank; a side with ``p ≥ n`` keeps at most ``max_dims`` (if given),
    and the second value is then that ``k`` (else None). ``svd``: ``(U, s)`` of ``xc`` if known.
    """
    n, p = xc.shape
    U, s = svd if svd is not None else np.linalg.svd(xc, full_matrices=False)[:2]
    rank = int(np.sum(s > s[0] * _RANK_RTOL))
    explained = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
    k = min(rank, int(np.searchsorted(explained, variance - 1e-12)) + 1)
    reduced = None
    if p >= n and max_dims is not None:
        k = reduced = min(k, max_dims)
    return U[:, :k], reduced


def _cca_core(X, Y, *, variance=1.0, max_dims=None):
    """Centre, reduce, and return the orthonormal bases, the SVD of ``UxᵀUy`` and metadata."""
    why = "CCA (centred, with at least one direction per side)"
    Xc, Yc = _pair(X, Y, min_samples=3, why=why, centred=True)
    n = Xc.shape[0]
    if max_dims is None:
        max_dims = (n - 1) // 2
    elif not (isinstance(max_dims, (int, np.integer)) and 1 <= max_dims < n):
        raise InvalidParameterError(f"max_dims must be an integer in [1, n) = [1, {n}); got {max_dims!r}")
    (Ux, rx), (Uy, ry) = (orthonormal_basis(a, variance=variance, max_dims=max_dims) for a in (Xc, Yc))
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
    principal angles between the two centred column spaces (the ``p ≥ n`` rule and
    :class:`DegenerateCCAWarning`: docs/metrics.md).

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
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
    """SVCCA (Raghu et al. 2017): SVD each side to the fewest top directions holding ``variance``
    of its variance (squared singular values of the centred data, as in PCA), then the mean
    canonical correlation of the reduced representations.

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
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
    return SVCCAResult(float(rho.mean()), rho, dims, reduced, float(variance), n, float(np.mean(rho**2)))


def pwcca(X, Y, *, max_dims: int | None = None) -> PWCCAResult:
    """Projection-weighted CCA (Morcos et al. 2018, Eqs. 2–3), with centred weights.

    ``PWCCA = Σᵢ wᵢ ρᵢ``, ``wᵢ = αᵢ / Σⱼ αⱼ``, ``αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩|`` where ``hᵢ`` are X's
    unit-norm canonical variates and ``xⱼ`` the *centred* neuron activation vectors of X (unlike
    a widely copied implementation: docs/metrics.md, PWCCA is centred).

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
        Asymmetric: the neurons of X weight the correlations.
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


def linear_regression(X, Y) -> float:
    """R²_LR = ‖Q_Yᵀ X_c‖²_F / ‖X_c‖²_F (Kornblith et al. 2019, Table 1), ``Q_Y`` an orthonormal
    basis of the centred Y's column space (numerical rank, no truncation): the share of the
    centred variance of X explained by its least-squares prediction from Y (with intercept),
    1 whenever Y spans the n − 1 dimensions of centred sample space.

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
        X is predicted from Y.

    Returns
    -------
    float
        Similarity in [0, 1], 1 for identical inputs; asymmetric. Invariant to invertible
        linear maps and shifts of Y, and to orthogonal maps, isotropic scaling and shifts of X.
    """
    xc, yc = _pair(X, Y, min_samples=2, why="linear regression", centred=True)
    q, _ = orthonormal_basis(yc)
    return float(np.sum((q.T @ xc) ** 2) / np.sum(xc**2))
