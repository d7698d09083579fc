"""Similarity and distance measures between two representations of the same samples.

Every metric is a pure function of two arrays ``X (n, p)`` and ``Y (n, q)`` whose rows are the
same ``n`` samples in the same order (numpy arrays or torch tensors; arrays with more
dimensions are flattened per sample, a 1-D array is one feature), computed in float64.
Formulas, sources and invariances: each function's docstring and ``docs/metrics.md``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from layersim.metrics._common import (
    ConstantInputError,
    DegenerateCCAWarning,
    InvalidParameterError,
    MetricInputError,
    NonFiniteInputError,
    SampleMismatchError,
    TooFewSamplesError,
)
from layersim.metrics.canonical import CCAResult, PWCCAResult, SVCCAResult, cca, linear_regression, pwcca, svcca
from layersim.metrics.functional import (
    accuracy_difference,
    confidence_rank_correlation,
    distribution_rank_correlation,
    jsd,
    linear_probe_accuracy,
    prediction_disagreement,
)
from layersim.metrics.kernel import cka_from_gram, linear_cka, linear_gram, linear_hsic, rbf_cka, rbf_gram
from layersim.metrics.shape import procrustes
from layersim.metrics.subspace import SubspaceMatchResult, subspace_match

__all__ = [
    "METRICS", "Metric", "CCAResult", "SVCCAResult", "PWCCAResult", "SubspaceMatchResult",
    "MetricInputError", "SampleMismatchError", "TooFewSamplesError", "NonFiniteInputError",
    "ConstantInputError", "InvalidParameterError", "DegenerateCCAWarning",
    "linear_gram", "rbf_gram", "cka_from_gram", "linear_cka", "rbf_cka", "linear_hsic", "cca", "svcca",
    "pwcca", "linear_regression",
    "procrustes", "subspace_match", "jsd", "prediction_disagreement", "accuracy_difference",
    "linear_probe_accuracy", "confidence_rank_correlation", "distribution_rank_correlation",
]


@dataclass(frozen=True)
class Metric:
    """One entry of :data:`METRICS`: ``metric(X, Y) -> float`` with its default settings.

    ``kind`` is ``"similarity"`` (1 for identical inputs), ``"distance"`` (0 for identical
    inputs) or ``"unnormalised"`` (grows with the inputs' scale); ``label`` is the name in the
    papers' tables (Kornblith et al. 2019, Table 2, where it has one).
    """

    function: Callable[..., float]
    label: str
    kind: str = "similarity"

    def __call__(self, X, Y) -> float:
        return float(self.function(X, Y))

    def distance(self, X, Y) -> float:
        """0 for identical inputs: the distance itself, or ``1 − similarity``."""
        if self.kind == "unnormalised":
            raise InvalidParameterError(f"{self.label} is unnormalised and has no distance form")
        value = self(X, Y)
        return value if self.kind == "distance" else 1.0 - value


METRICS: dict[str, Metric] = {
    "linear_cka": Metric(linear_cka, "CKA (Linear)"),
    "linear_cka_debiased": Metric(functools.partial(linear_cka, debiased=True), "CKA (Linear, debiased)"),
    "rbf_cka": Metric(rbf_cka, "CKA (RBF 1.0)"),
    "rbf_cka_debiased": Metric(functools.partial(rbf_cka, debiased=True), "CKA (RBF 1.0, debiased)"),
    "rbf_cka_0.2": Metric(functools.partial(rbf_cka, threshold=0.2), "CKA (RBF 0.2)"),
    "rbf_cka_0.4": Metric(functools.partial(rbf_cka, threshold=0.4), "CKA (RBF 0.4)"),
    "rbf_cka_0.8": Metric(functools.partial(rbf_cka, threshold=0.8), "CKA (RBF 0.8)"),
    "cca_mean_rho": Metric(lambda X, Y: cca(X, Y).mean_rho, "CCA (ρ̄)"),
    "cca_r2": Metric(lambda X, Y: cca(X, Y).r2, "CCA (R²_CCA)"),
    "svcca": Metric(lambda X, Y: svcca(X, Y).value, "SVCCA (ρ̄)"),
    "svcca_r2": Metric(lambda X, Y: svcca(X, Y).r2, "SVCCA (R²_CCA)"),
    "pwcca": Metric(lambda X, Y: pwcca(X, Y).value, "PWCCA"),
    "linear_regression": Metric(linear_regression, "Linear Reg."),
    "linear_hsic": Metric(linear_hsic, "Linear HSIC", "unnormalised"),
    "procrustes": Metric(procrustes, "Procrustes", "distance"),
    "procrustes_sqrt": Metric(functools.partial(procrustes, sqrt=True), "Procrustes (√)", "distance"),
}
"""Name → :class:`Metric`, the one registry of metric names (docs/metrics.md, docs/design.md)."""


def value_or_nan(f: Callable[..., float], *args, quiet: bool = True) -> tuple[float, str | None]:
    """``(float(f(*args)), None)``, or ``(NaN, reason)`` when the inputs make the metric
    undefined (a :class:`MetricInputError`, e.g. a constant layer); ``reason`` is
    ``"<error class>: <message>"``. ``quiet`` ignores warnings raised inside ``f`` (such as
    :class:`DegenerateCCAWarning`); with ``quiet=False`` they reach the caller.
    """
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            return float(f(*args)), None
    except MetricInputError as err:
        return float("nan"), f"{type(err).__name__}: {err}"
