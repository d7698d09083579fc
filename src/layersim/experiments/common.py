"""Helpers shared by the experiments: softmax, atomic CSV/JSON writing, correlation summaries."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from layersim.metrics.functional import softmax  # noqa: F401 (the one softmax, re-exported)


def write_csv(rows: list[dict], path, comments: list[str] | None = None) -> None:
    """Rows (dicts with the same keys) → CSV, with optional ``# comment`` lines first; atomic."""
    buf = io.StringIO()
    for line in comments or []:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    _write_text(path, buf.getvalue())


def read_csv(path) -> list[dict]:
    """A CSV written by :func:`write_csv` (comment lines skipped; numbers parsed)."""
    lines = [l for l in Path(path).read_text().splitlines() if not l.startswith("#")]
    rows = []
    for row in csv.DictReader(lines):
        out = {}
        for k, v in row.items():
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
        rows.append(out)
    return rows


def write_json(obj, path) -> None:
    _write_text(path, json.dumps(obj, indent=2, default=float))


def _write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def finite_or_nan(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else float("nan")


def markdown_table(rows: list[dict], keys: list[str]) -> str:
    """``rows`` as a Markdown table of the columns ``keys`` (floats to 3 decimals)."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
