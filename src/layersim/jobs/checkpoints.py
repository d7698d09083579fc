"""Jobs of the thesis' checkpoints over training (§3.4)."""

from __future__ import annotations

from layersim.data import load_dataset
from layersim.experiments.checkpoints import compare_with_final
from layersim.experiments.common import spearman
from layersim.io import read_csv, write_csv
from layersim.jobs import job, log, train_torch_job
from layersim.plots import lines_figure, scatter_panels


@job
def train_epochs(smk) -> None:
    """:func:`layersim.train.torch.train_torch` with a checkpoint (an output) at every configured epoch."""
    epoch_paths = dict(zip(smk.params.epochs, map(str, smk.output.checkpoints), strict=True))
    dataset = load_dataset(dict(smk.params.dataset))
    train_torch_job(smk, dataset, checkpoint=epoch_paths[max(epoch_paths)], epoch_checkpoints=epoch_paths)


@job
def checkpoint_compare(smk) -> None:
    """:func:`layersim.experiments.checkpoints.compare_with_final` of one instance's checkpoints → CSV."""
    paths = dict(zip(smk.params.epochs, map(str, smk.input.stores), strict=True))
    rows = compare_with_final(paths, layers=smk.params.layers, max_samples=smk.params.max_samples)
    rows = [{"model": smk.wildcards.model, "seed": int(smk.wildcards.seed), "lr": smk.params.lr, **r} for r in rows]
    for r in rows:
        log.info("epoch %d %s: CKA %.3f JSD %.3f", r["epoch"], r["layer"], r["cka"], r["jsd_bits"])
    write_csv(rows, smk.output.table)


@job
def checkpoints_summary(smk) -> None:
    """All instances' tables → one CSV, CKA and JSD against epoch, and CKA against JSD."""
    rows = [r for p in smk.input.tables for r in read_csv(p)]
    write_csv(rows, smk.output.table)
    layer = rows[0]["layer"]
    sel = [r for r in rows if r["layer"] == layer]
    series = {}
    for r in sel:
        series.setdefault(f"{r['model']} s{r['seed']} lr={r['lr']:g}", []).append(r)
    lines_figure(series, smk.output.figure, xlabel="epoch", panels=[("cka", f"linear CKA with the final model ({layer})"), ("jsd_bits", "JSD with the final model (bits)")], title="Checkpoints over training vs the final model (thesis Fig. 3.5)")
    scatter_panels([{"x": [r["cka"] for r in sel], "y": [r["jsd_bits"] for r in sel], "xlabel": f"CKA ({layer})", "ylabel": "JSD (bits)", "groups": [f"lr={r['lr']:g}" for r in sel]}], smk.output.scatter, title="CKA vs JSD of checkpoints against the final model")
    log.info("Spearman(CKA, JSD) over all checkpoints: %.3f", spearman([r["cka"] for r in sel], [r["jsd_bits"] for r in sel]))
