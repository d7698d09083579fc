"""Jobs of Kornblith et al. (2019), Table 2: layer identification."""

from __future__ import annotations

from layersim.experiments.kornblith import identification_accuracy, similarity_tensor
from layersim.io import atomic_write, read_csv, write_csv
from layersim.jobs import job, log
from layersim.plots import identification_figure as draw_identification_figure


@job
def identification(smk) -> None:
    """``similarity_tensor`` of one model's seeds and its ``identification_accuracy`` → Zarr + CSV."""
    paths = {path.split("/")[-1].removesuffix(".zarr"): path for path in smk.input.stores}
    sim = similarity_tensor(paths, layers=smk.params.layers, metrics=list(smk.params.metrics), max_samples=smk.params.max_samples, threads=smk.threads)
    rows = identification_accuracy(sim)
    for r in rows:
        log.info("%-16s %6.1f %%  (paper %5.1f %%)", r["label"], r["accuracy"], r["paper_accuracy"])
    atomic_write(smk.output.similarity, lambda p: sim.to_zarr(p, mode="w"))
    comments = [
        f"model: {smk.wildcards.model}", f"networks: {len(paths)}",
        f"layers: {','.join(sim['layer_a'].values)}", f"n_samples: {sim.attrs['n_samples']}",
    ]
    write_csv(rows, smk.output.table, comments, float_format=".4f", lineterminator="\r\n")


@job
def identification_figure(smk) -> None:
    """:func:`layersim.plots.identification_figure` of the table."""
    draw_identification_figure(read_csv(smk.input.table), smk.output.figure, title=smk.params.title)
