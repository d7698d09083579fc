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

Layout: ``_common`` (errors, float64 conversion, validation, centring), ``kernel`` (CKA),
``canonical`` (CCA, SVCCA, PWCCA), ``shape`` (Procrustes), ``subspace`` (subspace match),
``functional`` (measures on model outputs); everything public is re-exported here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from layersim.metrics._common import (
    ConstantInputError,
    DegenerateCCAWarning,
    InvalidParameterError,
    MetricInputError,
    NonFiniteInputError,
    SampleMismatchError,
    TooFewSamplesError,
)
from layersim.metrics.canonical import CCAResult, PWCCAResult, SVCCAResult, cca, pwcca, svcca
from layersim.metrics.functional import (
    accuracy_difference,
    confidence_rank_correlation,
    distribution_rank_correlation,
    jsd,
    linear_probe_accuracy,
    prediction_disagreement,
)
from layersim.metrics.kernel import cka_from_gram, linear_cka, linear_gram, rbf_cka, rbf_gram
from layersim.metrics.shape import procrustes
from layersim.metrics.subspace import SubspaceMatchResult, subspace_match

__all__ = [
    "METRICS", "METRIC_KIND", "CCAResult", "SVCCAResult", "PWCCAResult", "SubspaceMatchResult",
    "MetricInputError", "SampleMismatchError", "TooFewSamplesError", "NonFiniteInputError",
    "ConstantInputError", "InvalidParameterError", "DegenerateCCAWarning",
    "linear_gram", "rbf_gram", "cka_from_gram", "linear_cka", "rbf_cka", "cca", "svcca", "pwcca",
    "procrustes", "subspace_match", "jsd", "prediction_disagreement", "accuracy_difference",
    "linear_probe_accuracy", "confidence_rank_correlation", "distribution_rank_correlation",
]


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
