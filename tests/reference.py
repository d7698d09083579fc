"""Independent float64 references, written straight from the published formulas.

Nothing here calls layersim: the tests compare layersim against these.
"""

import numpy as np


def song_unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), Eq. 5 / Nguyen et al. (2021), Eq. 2:

    HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)),
    with K̃, L̃ the Gram matrices with their diagonals set to zero.
    """
    K = np.array(K, dtype=np.float64)
    L = np.array(L, dtype=np.float64)
    n = K.shape[0]
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    term1 = np.trace(K @ L)
    term2 = (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ K @ L @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def flat64(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def debiased_linear_cka(X, Y) -> float:
    """Debiased linear CKA (Kornblith et al. 2019 with Song's unbiased HSIC) of one batch."""
    X, Y = flat64(X), flat64(Y)
    K, L = X @ X.T, Y @ Y.T
    return song_unbiased_hsic(K, L) / np.sqrt(song_unbiased_hsic(K, K) * song_unbiased_hsic(L, L))


def minibatch_cka(batches_a, batches_b) -> np.ndarray:
    """Nguyen et al. (2021), Eq. 1: Σ_i HSIC₁(K_i, L_i) / sqrt(Σ HSIC₁(K_i, K_i) Σ HSIC₁(L_i, L_i)).

    ``batches_a[i]`` is the list of layer arrays of model a for batch i.
    """
    La, Lb = len(batches_a[0]), len(batches_b[0])
    ab, aa, bb = np.zeros((La, Lb)), np.zeros(La), np.zeros(Lb)
    for layers_a, layers_b in zip(batches_a, batches_b):
        Ks = [flat64(x) @ flat64(x).T for x in layers_a]
        Ls = [flat64(y) @ flat64(y).T for y in layers_b]
        for i, K in enumerate(Ks):
            aa[i] += song_unbiased_hsic(K, K)
            for j, L in enumerate(Ls):
                ab[i, j] += song_unbiased_hsic(K, L)
        for j, L in enumerate(Ls):
            bb[j] += song_unbiased_hsic(L, L)
    return ab / np.sqrt(np.outer(aa, bb))
