"""Metric vs function across architectures (thesis §3.3, Fig. 3.4, Table 3.1; method: docs/papers.md):
the pairs of model instances (:func:`pair_rows`) and Table 3.1 (:func:`correlation_rows`).
"""

from __future__ import annotations

import logging
import re
import warnings
from itertools import combinations

import numpy as np

from layersim.errors import LayersimError
from layersim.experiments import common
from layersim.metrics import METRICS, confidence_rank_correlation, jsd, prediction_disagreement, value_or_nan
from layersim.metrics.functional import softmax
from layersim.store import ActivationStore, check_comparable

log = logging.getLogger("layersim")

FUNCTIONAL = ("jsd_bits", "rank_correlation")
"""The functional measures on the y axis: mean JSD (bits) and confidence rank correlation."""

THESIS_TABLE_3_1 = {("linear_cka", "jsd_bits"): -0.75, ("linear_cka", "rank_correlation"): 0.703}
"""Table 3.1, "Cifar: trained nets": Spearman ρ of CKA vs JSD and of CKA vs rank correlation."""

_INSTANCE = re.compile(r"^(?P<model>.+)-s(?P<seed>\d+)-e(?P<epoch>\d+)$")


class ArchitecturesError(LayersimError):
    """Inputs of the architectures experiment that cannot be compared."""


def _parse(name: str) -> tuple[str, int, int]:
    m = _INSTANCE.match(name)
    if not m:
        raise ArchitecturesError(f"store name {name!r} is not <model>-s<seed>-e<epoch>")
    return m["model"], int(m["seed"]), int(m["epoch"])


def _value(f, args, what: str) -> float:
    """``f(*args)``; NaN (said in the log) where it is undefined, and any warning logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, reason = value_or_nan(f, *args, quiet=False)
    for w in caught:
        log.warning("%s: %s", what, w.message)
    if reason:
        log.warning("%s: undefined (%s); NaN in the table", what, reason)
    return value


def pair_rows(groups: dict[str, list[str]], *, layer: str = "pool", metrics: list[str], max_samples: int | None = None) -> list[dict]:
    """One row per unordered pair of distinct stores within each group.

    ``groups``: group name (``"trained"``, ``"untrained"``) → paths of activation stores named
    ``<model>-s<seed>-e<epoch>``; pairs are formed within a group, never across. ``layer`` is
    compared (present in every store) with each of ``metrics`` (names of
    :data:`layersim.metrics.METRICS`) on the first ``max_samples`` evaluation samples.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ArchitecturesError(f"unknown metrics {unknown} in papers.architectures.metrics; known: {', '.join(sorted(METRICS))}")
    rows_ = slice(0, max_samples)
    rows, reference = [], None
    for group, paths in groups.items():
        loaded = []
        for path in paths:
            store = ActivationStore(path)
            if reference is None:
                reference = store
            check_comparable(store, reference)
            if layer not in store.layers:
                raise ArchitecturesError(
                    f"store {store.path} has no layer {layer!r} (papers.architectures.layer); "
                    f"its layers end with: {', '.join(store.layers[-6:])} (extract.layers must keep the layer)"
                )
            features = store.read(layer, rows_)
            loaded.append((store.name, features, softmax(store.read("logits", rows_)), store.labels[rows_]))
        for (name_a, xa, pa, labels), (name_b, xb, pb, _) in combinations(loaded, 2):
            model_a, seed_a, _ = _parse(name_a)
            model_b, seed_b, _ = _parse(name_b)
            where = f"{group} pair {name_a} vs {name_b}"
            row = {"group": group, "a": name_a, "b": name_b, "model_a": model_a, "model_b": model_b, "seed_a": seed_a, "seed_b": seed_b, "same_model": model_a == model_b}
            row.update({m: _value(METRICS[m], (xa, xb), f"{where}, {m}") for m in metrics})
            row.update(
                jsd_bits=jsd(pa, pb),
                rank_correlation=_value(confidence_rank_correlation, (pa, pb, labels), f"{where}, rank_correlation"),
                disagreement=prediction_disagreement(pa, pb),
                accuracy_a=float((pa.argmax(1) == labels).mean()),
                accuracy_b=float((pb.argmax(1) == labels).mean()),
            )
            rows.append(row)
    if not rows:
        raise ArchitecturesError("no pair to compare: the architectures experiment needs at least two model instances (models × seeds)")
    return rows


def correlation_rows(pairs: list[dict], metrics: list[str], *, fit_group: str = "trained") -> list[dict]:
    """Table 3.1: one row per metric × functional measure over the ``fit_group`` pairs.

    ``slope``, ``intercept``: least squares of the functional measure on the metric;
    ``spearman_rho_all`` is over every pair; ``n_pairs`` counts the ``fit_group`` pairs where both
    values are defined; ``thesis_rho`` is Table 3.1's value where it has one (CKA only), else empty.
    """
    fit = [p for p in pairs if p["group"] == fit_group]
    out = []
    for metric in metrics:
        for measure in FUNCTIONAL:
            x, y = np.array([p[metric] for p in fit], float), np.array([p[measure] for p in fit], float)
            slope, intercept = common.fit_line(x, y)
            out.append(
                {
                    "metric": metric,
                    "kind": METRICS[metric].kind,
                    "functional": measure,
                    "n_pairs": int(np.sum(np.isfinite(x) & np.isfinite(y))),
                    "spearman_rho": common.spearman(x, y),
                    "slope": slope,
                    "intercept": intercept,
                    "spearman_rho_all": common.spearman([p[metric] for p in pairs], [p[measure] for p in pairs]),
                    "thesis_rho": THESIS_TABLE_3_1.get((metric, measure), ""),
                }
            )
    return out


def markdown_table(rows: list[dict]) -> str:
    """The correlation table as Markdown (3 decimals; NaN shown as "undefined")."""
    def fmt(v):
        if isinstance(v, float):
            return "undefined" if not np.isfinite(v) else f"{v:.3f}"
        return str(v) if v != "" else "—"

    return common.markdown_table(rows, ["metric", "kind", "functional", "n_pairs", "spearman_rho", "slope", "spearman_rho_all", "thesis_rho"], fmt=fmt)
