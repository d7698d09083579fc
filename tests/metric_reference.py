"""Float64 references for ``layersim.metrics``, written straight from the papers' formulas.

Nothing here imports layersim. Each function follows its paper's formula as literally as is
practical (explicit centring matrices, covariance matrices, loops), deliberately by a
different computation than the library (which uses SVDs, U-centring, residuals).
"""

import itertools
import math

import numpy as np


def flat64(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def centring_matrix(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


# --- HSIC / CKA ------------------------------------------------------------------------------


def hsic_biased(K, L) -> float:
    """Gretton et al. (2005): HSIC₀ = tr(K H L H) / (n − 1)²."""
    n = K.shape[0]
    H = centring_matrix(n)
    return float(np.trace(K @ H @ L @ H) / (n - 1) ** 2)


def hsic_unbiased(K, L) -> float:
    """Song et al. (2012), Eq. 5: with K̃, L̃ the Grams with zero diagonals,
    HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))."""
    K, L = np.array(K, float), np.array(L, float)
    n = K.shape[0]
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return float(
        (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (one @ K @ L @ one))
        / (n * (n - 3))
    )


def cka(K, L, debiased=False) -> float:
    """Kornblith et al. (2019), Eq. 4: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    h = hsic_unbiased if debiased else hsic_biased
    return h(K, L) / math.sqrt(h(K, K) * h(L, L))


def linear_cka(X, Y, debiased=False) -> float:
    X, Y = flat64(X), flat64(Y)
    return cka(X @ X.T, Y @ Y.T, debiased)


def rbf_gram(X, threshold=1.0) -> np.ndarray:
    """Kornblith et al. (2019): k(x, x') = exp(−‖x − x'‖² / (2σ²)), σ = threshold · sqrt(median
    of the n² squared distances) (their reference code, diagonal zeros included)."""
    X = flat64(X)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=-1)
    sigma2 = threshold**2 * np.median(d2)
    return np.exp(-d2 / (2 * sigma2))


def rbf_cka(X, Y, threshold=1.0, debiased=False) -> float:
    return cka(rbf_gram(X, threshold), rbf_gram(Y, threshold), debiased)


# --- CCA family ------------------------------------------------------------------------------


def _inv_sqrt(S):
    w, V = np.linalg.eigh(S)
    return V @ np.diag(w**-0.5) @ V.T


def _hotelling(X, Y):
    """Centred X, the whitening Σxx^{-1/2} and the symmetric matrix
    M = Σxx^{-1/2} Σxy Σyy⁻¹ Σyx Σxx^{-1/2} whose eigenvalues are the ρᵢ²."""
    n = X.shape[0]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = Xc.T @ Xc / (n - 1), Yc.T @ Yc / (n - 1), Xc.T @ Yc / (n - 1)
    Wx = _inv_sqrt(Sxx)
    M = Wx @ Sxy @ np.linalg.inv(Syy) @ Sxy.T @ Wx
    return Xc, Wx, (M + M.T) / 2


def cca_rho(X, Y) -> np.ndarray:
    """Hotelling (1936): ρᵢ² are the eigenvalues of Σxx^{-1/2} Σxy Σyy⁻¹ Σyx Σxx^{-1/2}
    (sample covariances); the top min(p, q), in decreasing order."""
    X, Y = flat64(X), flat64(Y)
    _, _, M = _hotelling(X, Y)
    w = np.sort(np.linalg.eigvalsh(M))[::-1][: min(X.shape[1], Y.shape[1])]
    return np.sqrt(np.clip(w, 0, 1))


def pca_project(X, variance) -> np.ndarray:
    """Project centred X on the fewest principal axes whose explained variance reaches
    ``variance`` (eigen-decomposition of the covariance matrix)."""
    X = flat64(X)
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(Xc.T @ Xc)
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    k = 1
    while w[:k].sum() / w.sum() < variance - 1e-12:
        k += 1
    return Xc @ V[:, :k]


def svcca(X, Y, variance=0.99) -> float:
    """Raghu et al. (2017): PCA each side to ``variance``, then the mean canonical correlation."""
    return float(cca_rho(pca_project(X, variance), pca_project(Y, variance)).mean())


def pwcca(X, Y, centre_weights=True) -> float:
    """Morcos et al. (2018): Σ αᵢρᵢ / Σ αᵢ, αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩|, hᵢ = X aᵢ (unit norm) the
    canonical variates of X.

    ``centre_weights=False`` mimics the widely copied public implementation (described, not
    copied): it adds neuron i's mean back to canonical variate i (so it needs p ≤ q, one
    variate per neuron), re-orthonormalises the variates by QR and takes the inner products
    with the uncentred activations, which makes the result depend on shifts."""
    X, Y = flat64(X), flat64(Y)
    Xc, Wx, M = _hotelling(X, Y)
    w, B = np.linalg.eigh(M)
    order = np.argsort(w)[::-1][: min(X.shape[1], Y.shape[1])]
    rho = np.sqrt(np.clip(w[order], 0, 1))
    A = Wx @ B[:, order]  # canonical weight vectors
    H = Xc @ A
    if centre_weights:
        H /= np.linalg.norm(H, axis=0)
        acts = Xc
    else:
        assert X.shape[1] <= Y.shape[1], "the uncentred variant needs p ≤ q"
        H, _ = np.linalg.qr(H + X.mean(0)[None, : H.shape[1]])
        acts = X
    alpha = np.array([sum(abs(H[:, i] @ acts[:, j]) for j in range(X.shape[1])) for i in range(len(rho))])
    return float(alpha @ rho / alpha.sum())


# --- Procrustes ------------------------------------------------------------------------------


def procrustes(X, Y) -> float:
    """Ding et al. (2021): centre, unit Frobenius norm, d = 2 − 2‖XᵀY‖_* (nuclear norm)."""
    X, Y = flat64(X), flat64(Y)
    X, Y = X - X.mean(0), Y - Y.mean(0)
    X, Y = X / np.linalg.norm(X), Y / np.linalg.norm(Y)
    return float(2 - 2 * np.linalg.svd(X.T @ Y, compute_uv=False).sum())


# --- Subspace match (brute force over all subsets, straight from the definitions) ------------


def _dist_to_span(z, Z) -> float:
    if Z.shape[1] == 0:
        return float(np.linalg.norm(z))
    coef, *_ = np.linalg.lstsq(Z, z, rcond=None)
    return float(np.linalg.norm(z - Z @ coef))


def is_epsilon_match(X, Y, A, B, epsilon) -> bool:
    """Wang et al. (2018), Def. 2: ∀a ∈ A: dist(z_a, span z_B) ≤ ε‖z_a‖, and vice versa."""
    slack = 1e-9
    return all(_dist_to_span(X[:, a], Y[:, list(B)]) <= (epsilon + slack) * np.linalg.norm(X[:, a]) for a in A) and all(
        _dist_to_span(Y[:, b], X[:, list(A)]) <= (epsilon + slack) * np.linalg.norm(Y[:, b]) for b in B
    )


def maximum_match(X, Y, epsilon):
    """Wang et al. (2018), Def. 3: the union of all ε-matches (enumerated; tiny p, q only)."""
    X, Y = flat64(X), flat64(Y)

    def subsets(m):
        return itertools.chain.from_iterable(itertools.combinations(range(m), k) for k in range(m + 1))

    A_all, B_all = set(), set()
    for A in subsets(X.shape[1]):
        for B in subsets(Y.shape[1]):
            if is_epsilon_match(X, Y, A, B, epsilon):
                A_all |= set(A)
                B_all |= set(B)
    return tuple(sorted(A_all)), tuple(sorted(B_all))


# --- Functional ------------------------------------------------------------------------------


def jsd(P, Q, base=2.0) -> float:
    """Lin (1991): JSD(p, q) = ½KL(p‖m) + ½KL(q‖m), m = (p + q)/2; mean over samples."""
    total = 0.0
    for p, q in zip(np.asarray(P, float), np.asarray(Q, float)):
        m = (p + q) / 2
        kl = lambda a: sum(ai * math.log(ai / mi, base) for ai, mi in zip(a, m) if ai > 0)  # noqa: E731
        total += 0.5 * kl(p) + 0.5 * kl(q)
    return total / len(P)


def pca_top(X, k) -> np.ndarray:
    """Centred X projected on its top ``k`` principal axes (covariance eigenvectors)."""
    X = flat64(X)
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(Xc @ Xc.T)  # n × n form: works for p ≥ n
    top = np.argsort(w)[::-1][:k]
    return V[:, top] * np.sqrt(np.clip(w[top], 0, None))
