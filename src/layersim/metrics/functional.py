"""Functional measures on model outputs: JSD, prediction disagreement, accuracy difference, linear probes."""

from __future__ import annotations

import math

import numpy as np

from layersim.metrics._common import (
    InvalidParameterError,
    MetricInputError,
    SampleMismatchError,
    _as_matrix,
    _check_positive,
)


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of ``(n, classes)`` logits in float64 (max-shifted, so no overflow).

    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _distributions(P, name: str, from_logits: bool) -> np.ndarray:
    P = _as_matrix(P, name)
    if from_logits:
        return softmax(P)
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
        Class probabilities per sample (rows sum to 1), or logits, softmaxed per row, if ``from_logits``.
    base : float
        Logarithm base (> 0, ≠ 1); 2 by default.
    from_logits : bool

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

    def entropy(A):
        return -np.sum(np.where(A > 0, A * np.log(np.where(A > 0, A, 1.0)), 0.0), axis=1)

    per_sample = entropy(0.5 * (P + Q)) - 0.5 * (entropy(P) + entropy(Q))
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
    L2-regularised multinomial logistic regression (scikit-learn, ``lbfgs``), held-out accuracy.

    Parameters
    ----------
    X, labels : arrays ``(n, p, ...)`` and ``(n,)``
        Activations (flattened per sample) and class labels.
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


def confidence_rank_correlation(P, Q, labels, *, from_logits: bool = False) -> float:
    """Spearman rank correlation of two models' per-sample confidence in the true class.

    ``ρ = Spearman(P[i, y_i], Q[i, y_i])`` over the ``n`` samples (the thesis' functional
    similarity: do the models find the same samples easy and hard?).

    Parameters
    ----------
    P, Q : array ``(n, classes)``
        Probabilities, or logits, softmaxed per row, if ``from_logits``.
    labels : array ``(n,)``
        True classes.
    from_logits : bool

    Returns
    -------
    float
        Spearman's ρ in ``[−1, 1]``; 1 when the two orderings agree. Invariant to any strictly
        increasing map of either confidence.

    Examples
    --------
    >>> P = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    >>> round(confidence_rank_correlation(P, P ** 2 / (P ** 2).sum(1, keepdims=True), [0, 0, 1]), 6)
    1.0
    """
    from scipy.stats import spearmanr

    P, Q = _distributions(P, "P", from_logits), _distributions(Q, "Q", from_logits)
    labels = np.asarray(labels, dtype=np.int64)
    if not (len(P) == len(Q) == len(labels)):
        raise SampleMismatchError(f"P has {len(P)} rows, Q {len(Q)} and labels {len(labels)}; all must match")
    rows = np.arange(len(labels))
    conf_p, conf_q = P[rows, labels], Q[rows, labels]
    if np.ptp(conf_p) == 0 or np.ptp(conf_q) == 0:
        raise MetricInputError("a model's confidence is the same on every sample: the rank correlation is undefined")
    return float(spearmanr(conf_p, conf_q).statistic)


def distribution_rank_correlation(P, Q, *, from_logits: bool = False) -> float:
    """Mean over samples of the Spearman rank correlation between two models' class (or action)
    probabilities: for each sample, do the two models order the classes the same way?

    ``mean_i Spearman(P[i, :], Q[i, :])`` (ties get average ranks), the thesis' rank
    correlation of agents' action distributions (its appendix Figures 1–2).

    Parameters
    ----------
    P, Q : array ``(n, C)``, ``C ≥ 2``
        Probabilities of the same samples, or logits, softmaxed per row, if ``from_logits``.
    from_logits : bool

    Returns
    -------
    float
        In ``[−1, 1]``; 1 when every sample's orderings agree. Invariant to any strictly
        increasing map of a row. A row of ``P`` or ``Q`` with all classes equal (its ranks, and
        ρ, undefined) is a :class:`MetricInputError`.

    Examples
    --------
    >>> P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    >>> distribution_rank_correlation(P, [[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
    0.75
    """
    from scipy.stats import rankdata

    P, Q = _distributions(P, "P", from_logits), _distributions(Q, "Q", from_logits)
    if P.shape != Q.shape:
        raise SampleMismatchError(f"P is {P.shape} and Q is {Q.shape}; both must be (n_samples, n_classes)")
    if P.shape[1] < 2:
        raise MetricInputError(f"a rank correlation over classes needs at least 2 classes; got {P.shape[1]}")
    rp, rq = (rankdata(A, axis=1) - (P.shape[1] + 1) / 2 for A in (P, Q))  # centred ranks
    norm = np.sqrt((rp**2).sum(1) * (rq**2).sum(1))
    if (norm == 0).any():
        raise MetricInputError(f"{int((norm == 0).sum())} sample(s) have all classes equally likely in P or Q: their rank correlation is undefined")
    return float(np.mean((rp * rq).sum(1) / norm))
