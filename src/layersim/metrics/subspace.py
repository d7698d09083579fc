"""Neuron activation subspace match (Wang et al. 2018), as criticised by Johnson (2019)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layersim.metrics._common import _RANK_RTOL, InvalidParameterError, _pair


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
    residual = Z
    if B.shape[1]:
        U, s, _ = np.linalg.svd(B, full_matrices=False)
        basis = U[:, s > s[0] * _RANK_RTOL]
        residual = Z - basis @ (basis.T @ Z)
    return np.linalg.norm(residual, axis=0) > (epsilon + 1e-9) * np.linalg.norm(Z, axis=0)


def subspace_match(X, Y, *, epsilon: float) -> SubspaceMatchResult:
    """Maximum ε-approximate subspace match of neuron sets (Wang et al. 2018, Defs. 1–3, Alg. 1).

    Neuron ``j`` of X has activation vector ``z_j = X[:, j]`` (raw, not centred, as in the
    paper). ``(A, B)`` is an ε-match if every ``z_a`` (a ∈ A) lies within ``ε‖z_a‖`` of
    ``span{z_b : b ∈ B}`` and vice versa; ``ε = 0`` is the exact match ``span(z_A) = span(z_B)``.
    Unions of ε-matches are ε-matches, so a maximum match exists (Johnson 2019's criticism of
    the measure: ``docs/metrics.md``).

    Parameters
    ----------
    X, Y : arrays ``(n, p, ...)`` and ``(n, q, ...)``
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
