"""Summaries shared by the experiments: Spearman ρ, a least-squares line, a Markdown table."""

from __future__ import annotations

import numpy as np


def spearman(x, y) -> float:
    """Spearman ρ of two sequences (NaN pairs dropped; NaN if fewer than 3 or a side is constant)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(spearmanr(x[keep], y[keep]).statistic)


def fit_line(x, y) -> tuple[float, float]:
    """Least-squares slope and intercept (NaN if undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    return float(slope), float(intercept)


def markdown_table(rows: list[dict], keys: list[str], *, fmt=None) -> str:
    """``rows`` as a Markdown table of the columns ``keys``; ``fmt(value) -> str`` (default:
    floats to 3 decimals)."""
    fmt = fmt or (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
