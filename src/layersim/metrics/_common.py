"""Shared helpers of the metrics: errors, conversion to float64 ``(n, p)``, validation, centring."""

from __future__ import annotations

import math

import numpy as np

from layersim.errors import LayersimError

_RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero (rank)


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


def _pair(X, Y, *, min_samples: int = 2, why: str = "this metric", centred: bool = False):
    """Validate and convert a pair of representations of the same samples, column-centred if ``centred``."""
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise SampleMismatchError(
            f"X has {X.shape[0]} samples and Y has {Y.shape[0]}; both must hold the same "
            "samples in the same order (rows are samples)"
        )
    if X.shape[0] < min_samples:
        raise TooFewSamplesError(f"{why} needs at least {min_samples} samples; got {X.shape[0]}")
    return (_centre(X, "X"), _centre(Y, "Y")) if centred else (X, Y)


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
