"""Jobs of Ding & Steinhardt (2021): layer-depth and PC-deletion benchmarks."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from layersim.experiments import ding
from layersim.io import write_csv
from layersim.jobs import job, log
from layersim.layers import select_layers
from layersim.plots import scatter_panels
from layersim.store import ActivationStore


@job
def ding_benchmark(smk) -> None:
    """:mod:`layersim.experiments.ding` over the seeds of one model → tables, summary, figures."""
    p = smk.params
    rows_ = slice(0, p.max_samples)
    reps, pc_reps, labels = {}, {}, None
    for seed, path in zip(p.seeds, smk.input.stores, strict=True):
        store = ActivationStore(path)
        labels = store.labels[rows_] if labels is None else labels
        for layer in select_layers(store.layers, p.layers, what="papers.ding.layers pattern", include_logits=True):
            reps[f"s{seed}:{layer}"] = store.read(layer, rows_)
        pc_layer = select_layers(store.layers, p.pc_layer, what="papers.ding.pc_layer pattern", include_logits=True)[0]
        pc_reps[f"s{seed}:{pc_layer}"] = store.read(pc_layer, rows_)
    metrics = list(p.metrics)
    with threadpool_limits(limits=max(1, smk.threads), user_api="blas"):
        depth_pairs, depth_summary = ding.depth_benchmark(reps, labels, metrics)
        pc_rows, pc_summary = ding.pc_deletion_benchmark(pc_reps, labels, metrics, list(p.pc_deletions))
    write_csv(depth_pairs, smk.output.depth)
    write_csv(pc_rows, smk.output.pc_deletion)
    summary = depth_summary + pc_summary
    for r in summary:
        log.info("%s %s: rho %.3f (pooled %.3f)", r["benchmark"], r["metric"], r["spearman_rho_mean_over_references"], r["spearman_rho_all_pairs"])
    write_csv(summary, smk.output.summary, comments=["Spearman rho between metric distance and |probe accuracy difference| (layer_depth) or probe accuracy drop (pc_deletion)"])
    scatter_panels([{"x": [r[m] for r in depth_pairs], "y": [r["abs_probe_difference"] for r in depth_pairs], "xlabel": f"{m} distance", "ylabel": "|Δ probe accuracy|"} for m in metrics], smk.output.depth_figure, title="Layer depth / seeds (specificity): distance vs probe-accuracy difference")
    scatter_panels([{"x": [r[m] for r in pc_rows], "y": [r["probe_drop"] for r in pc_rows], "xlabel": f"{m} distance to original", "ylabel": "probe accuracy drop", "groups": [r["representation"] for r in pc_rows]} for m in metrics], smk.output.pc_figure, title="Principal-component deletion (sensitivity): distance vs accuracy drop")
