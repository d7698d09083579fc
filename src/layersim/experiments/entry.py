"""Rule entry points of the functional-similarity experiments (re-exported by layersim.rules).

Each takes the ``snakemake`` object of a ``script:`` rule, like the other functions of
:mod:`layersim.rules`, and calls one function of an experiment module.
"""

from __future__ import annotations

import logging

from layersim.rules import _rule

log = logging.getLogger("layersim")


@_rule
def johnson_table(smk) -> None:
    """Rule ``johnson_table``: :func:`layersim.experiments.johnson.johnson_rows` → CSV + Markdown."""
    from layersim.experiments.common import _write_text, write_csv
    from layersim.experiments.johnson import johnson_rows, verdict

    rows = johnson_rows(tuple(smk.params.epsilons))
    write_csv(rows, smk.output.table, comments=["Johnson (2019) Example 3.1: hidden layers of two ReLU networks, y = W2 ReLU(W1 x)", "see layersim.experiments.johnson and docs/metrics.md"])
    lines = ["| construction | inputs | subspace match (ε=0) | linear CKA | CCA mean ρ | Procrustes | same function? | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cca = "undefined (n < 3)" if r["cca_mean_rho"] != r["cca_mean_rho"] else f"{r['cca_mean_rho']:.3f}"
        lines.append(f"| {r['construction']} | {r['n_inputs']} | {r['subspace_match_eps0']:.2f} ({r['match_sets_eps0']}) | {r['linear_cka']:.3f} | {cca} | {r['procrustes']:.3g} | {'yes' if r['same_function'] else 'no'} | {verdict(r)} |")
        log.info(verdict(r))
    _write_text(smk.output.markdown, "\n".join(lines) + "\n")
__all__ = ['johnson_table']


def _md_table(rows: list[dict], keys: list[str]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@_rule
def existence_proof(smk) -> None:
    """Rule ``existence_proof``: :func:`layersim.experiments.existence.existence_rows` on a layer
    of the frozen base's store → CSV, Markdown and figure."""
    from layersim.experiments.common import _write_text, write_csv
    from layersim.experiments.existence import existence_rows
    from layersim.experiments.figures import existence_figure
    from layersim.store import ActivationStore

    p = smk.params
    store = ActivationStore(smk.input.store)
    features, labels = store.read(p.layer), store.labels
    rows = existence_rows(features, labels, int(labels.max()) + 1, d_ratios=list(p.d_ratios), flip_fraction=p.flip_fraction, head_fraction=p.head_fraction, steps=p.head_steps, seed=p.seed)
    for r in rows:
        log.info("d=%.2f CKA(features)=%.3f CKA(masked)=%.3f JSD=%.3f rank=%.3f acc1=%.3f acc2=%.3f", r["d_ratio"], r["cka_features"], r["cka_masked"], r["jsd_bits"], r["rank_correlation"], r["accuracy_net1"], r["accuracy_net2"])
    write_csv(rows, smk.output.table, comments=[f"existence proof (thesis Table 4.1): base {store.name}, layer {p.layer}, flip_fraction {p.flip_fraction}"])
    _write_text(smk.output.markdown, _md_table(rows, ["d_ratio", "cka_features", "cca_features", "cka_masked", "cca_masked", "jsd_bits", "rank_correlation", "accuracy_net1", "accuracy_net2"]))
    existence_figure(rows, smk.output.figure, title=f"Existence proof: frozen {store.name} ({p.layer}), Net2 with {p.flip_fraction:.0%} labels flipped")


__all__ += ["existence_proof"]


@_rule
def train_epochs(smk) -> None:
    """Rule ``train_epochs``: :func:`layersim.train.train_torch` saving a checkpoint at every
    configured epoch (one output per epoch, so that extraction fans out over them)."""
    import re as _re

    from layersim.data import load_dataset
    from layersim.train import train_torch

    epoch_paths = {int(_re.search(r"e(\d+)\.pt$", str(p)).group(1)): str(p) for p in smk.output.checkpoints}
    dataset = load_dataset(dict(smk.params.dataset))
    train_torch(dict(smk.params.arch), dict(smk.params.train), dataset, seed=int(smk.wildcards.seed), checkpoint=epoch_paths[max(epoch_paths)], history=smk.output.history, threads=smk.threads, epoch_checkpoints=epoch_paths)


@_rule
def checkpoint_compare(smk) -> None:
    """Rule ``checkpoint_compare``: :func:`layersim.experiments.checkpoints.compare_with_final`
    over the checkpoints of one instance → CSV."""
    import re as _re

    from layersim.experiments.checkpoints import compare_with_final
    from layersim.experiments.common import write_csv

    paths = {int(_re.search(r"-e(\d+)\.zarr$", str(p)).group(1)): str(p) for p in smk.input.stores}
    rows = compare_with_final(paths, layers=smk.params.layers, max_samples=smk.params.max_samples)
    rows = [{"model": smk.wildcards.model, "seed": int(smk.wildcards.seed), "lr": smk.params.lr, **r} for r in rows]
    for r in rows:
        log.info("epoch %d %s: CKA %.3f JSD %.3f", r["epoch"], r["layer"], r["cka"], r["jsd_bits"])
    write_csv(rows, smk.output.table)


@_rule
def checkpoints_summary(smk) -> None:
    """Rule ``checkpoints_summary``: all instances' tables → one CSV and the figure (CKA and
    JSD against epoch, CKA against JSD; one line per model / learning rate)."""
    from layersim.experiments.common import read_csv, spearman, write_csv
    from layersim.experiments.figures import lines_figure, scatter_panels

    rows = [r for p in smk.input.tables for r in read_csv(p)]
    write_csv(rows, smk.output.table)
    layer = rows[0]["layer"]
    series = {}
    for r in rows:
        if r["layer"] == layer:
            series.setdefault(f"{r['model']} s{r['seed']} lr={r['lr']:g}", []).append(r)
    lines_figure(series, smk.output.figure, xlabel="epoch", panels=[("cka", f"linear CKA with the final model ({layer})"), ("jsd_bits", "JSD with the final model (bits)")], title="Checkpoints over training vs the final model (thesis Fig. 3.5)")
    sel = [r for r in rows if r["layer"] == layer]
    scatter_panels([{"x": [r["cka"] for r in sel], "y": [r["jsd_bits"] for r in sel], "xlabel": f"CKA ({layer})", "ylabel": "JSD (bits)", "groups": [f"lr={r['lr']:g}" for r in sel]}], smk.output.scatter, title="CKA vs JSD of checkpoints against the final model")
    log.info("Spearman(CKA, JSD) over all checkpoints: %.3f", spearman([r["cka"] for r in sel], [r["jsd_bits"] for r in sel]))


__all__ += ["train_epochs", "checkpoint_compare", "checkpoints_summary"]


@_rule
def ding_benchmark(smk) -> None:
    """Rule ``ding_benchmark``: :mod:`layersim.experiments.ding` over the seeds of one model →
    pair tables, the Spearman summary and the specificity / sensitivity figures."""
    import re as _re

    from threadpoolctl import threadpool_limits

    from layersim.experiments import ding
    from layersim.experiments.common import write_csv
    from layersim.experiments.figures import scatter_panels
    from layersim.store import ActivationStore

    p = smk.params
    rows_ = slice(0, p.max_samples)
    reps, pc_reps, labels = {}, {}, None
    for path in smk.input.stores:
        store = ActivationStore(path)
        labels = store.labels[rows_] if labels is None else labels
        seed = _re.search(r"-s(\d+)-", store.name).group(1)
        for layer in store.layers:
            if _re.search(p.layers, layer):
                reps[f"s{seed}:{layer}"] = store.read(layer, rows_)
        pc_layer = next(l for l in store.layers if _re.search(p.pc_layer, l))
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


__all__ += ["ding_benchmark"]
