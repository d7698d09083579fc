"""Jobs of the thesis' architectures comparison (§3.3, Table 3.1)."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from layersim.data import load_dataset
from layersim.experiments.architectures import FUNCTIONAL, correlation_rows, markdown_table, pair_rows
from layersim.io import read_csv, write_csv, write_text
from layersim.jobs import job, log, train_torch_job
from layersim.plots import scatter_panels


@job
def architectures_init(smk) -> None:
    """The untrained copy of a model: ``train_torch`` with 0 epochs, the trained instance's initialisation."""
    train_torch_job(smk, load_dataset(dict(smk.params.dataset)), epochs=0)


@job
def architectures_pairs(smk) -> None:
    """:func:`layersim.experiments.architectures.pair_rows` of the trained (and untrained) stores → CSV."""
    p = smk.params
    groups = {"trained": list(smk.input.trained), "untrained": list(smk.input.untrained)}  # pairs within each
    with threadpool_limits(limits=max(1, smk.threads), user_api="blas"):
        rows = pair_rows(groups, layer=p.layer, metrics=list(p.metrics), max_samples=p.max_samples)
    for r in rows:
        log.info("%s %s vs %s: %s JSD %.3f rank %.3f", r["group"], r["a"], r["b"], " ".join(f"{m} {r[m]:.3f}" for m in p.metrics), r["jsd_bits"], r["rank_correlation"])
    write_csv(rows, smk.output.table, comments=[f"thesis §3.3 (Fig. 3.4): every pair of instances within a group; metrics of layer {p.layer!r}, JSD (bits) and confidence rank correlation of the outputs", f"samples: first {p.max_samples or 'all'} of the evaluation split"])


@job
def architectures_summary(smk) -> None:
    """The pairs → Table 3.1 (CSV + Markdown) and the scatter figure (a row of panels per metric)."""
    pairs = read_csv(smk.input.pairs)
    metrics = list(smk.params.metrics)
    rows = correlation_rows(pairs, metrics)
    for r in rows:
        log.info("%s vs %s: rho %.3f over %d trained pairs (thesis %s)", r["metric"], r["functional"], r["spearman_rho"], r["n_pairs"], r["thesis_rho"] or "-")
    write_csv(rows, smk.output.table, comments=["thesis Table 3.1 over the trained pairs: Spearman rho and least-squares slope of each functional measure on each metric; spearman_rho_all includes the untrained pairs", "procrustes is a distance (0 = identical): its signs are the opposite of the similarities'"])
    write_text(smk.output.markdown, markdown_table(rows))
    labels = {"jsd_bits": "JSD of predictions (bits)", "rank_correlation": "confidence rank correlation"}
    panels = [
        {
            "x": [r[m] for r in pairs],
            "y": [r[f] for r in pairs],
            "xlabel": f"{m} ({smk.params.layer})",
            "ylabel": labels[f],
            "groups": [f"{r['group']} pairs" for r in pairs],
            "fit_mask": [r["group"] == "trained" for r in pairs],
        }
        for m in metrics
        for f in FUNCTIONAL
    ]
    scatter_panels(panels, smk.output.figure, ncols=len(FUNCTIONAL), title="Representational vs functional similarity across architectures (thesis Fig. 3.4); line and ρ over the trained pairs")
