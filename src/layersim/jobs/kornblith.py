"""Jobs of Kornblith et al. (2019), Table 2: layer identification."""

from __future__ import annotations

from layersim.jobs import job, log


@job
def identification(smk) -> None:
    """Rule ``identification``: :func:`layersim.experiments.kornblith.similarity_tensor` over the seeds of
    one model and :func:`layersim.experiments.kornblith.identification_accuracy` → Zarr + CSV."""
    from layersim.experiments.kornblith import identification_accuracy, similarity_tensor, write_accuracy_csv
    from layersim.io import atomic_write

    paths = {path.split("/")[-1].removesuffix(".zarr"): path for path in smk.input.stores}
    sim = similarity_tensor(paths, layers=smk.params.layers, metrics=list(smk.params.metrics), max_samples=smk.params.max_samples, threads=smk.threads)
    rows = identification_accuracy(sim)
    for r in rows:
        log.info("%-16s %6.1f %%  (paper %5.1f %%)", r["label"], r["accuracy"], r["paper_accuracy"])
    atomic_write(smk.output.similarity, lambda p: sim.to_zarr(p, mode="w"))
    write_accuracy_csv(rows, smk.output.table, attrs={"model": smk.wildcards.model, "networks": len(paths), "layers": ",".join(sim["layer_a"].values), "n_samples": sim.attrs["n_samples"]})


@job
def identification_figure(smk) -> None:
    """Rule ``identification_figure``: :func:`layersim.plots.identification_figure` of the table."""
    from layersim.experiments.kornblith import read_accuracy_csv
    from layersim.plots import identification_figure as draw

    draw(read_accuracy_csv(smk.input.table), smk.output.figure, title=smk.params.title)
