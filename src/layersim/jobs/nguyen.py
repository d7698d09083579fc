"""Jobs of Nguyen, Raghu & Kornblith (2021): first-PC shares, depth/width series, block structure, cross-seed figure."""

from __future__ import annotations

import numpy as np

from layersim.experiments.nguyen import PC1_SHARE_THRESHOLD, largest_block, largest_high_cka_run, pc_shares, read_pc_shares, write_pc_shares
from layersim.io import write_csv
from layersim.jobs import job, log
from layersim.layers import select_layers
from layersim.plots import block_structure_figure, grid_figure
from layersim.plots import series_figure as draw_series_figure
from layersim.store import read_similarity


@job
def pca(smk) -> None:
    """:func:`layersim.experiments.nguyen.pc_shares` (first-PC share per layer) → CSV."""
    p = smk.params
    shares = pc_shares(smk.input.store, block_rows=p.block_rows, max_gram_features=p.max_gram_features, oversamples=p.oversamples, n_iter=p.n_iter)
    for s in shares:
        log.info("%s: p=%d pc1_share=%.4f (%s)", s.layer, s.n_features, s.share, s.method)
    write_pc_shares(shares, smk.output.table, attrs={"store": smk.wildcards.model + f"-s{smk.wildcards.seed}-e{smk.wildcards.epoch}"})


def _by_instance(paths) -> dict:
    return {(r.attrs["model_a"], r.attrs["model_b"]): r for r in map(read_similarity, paths)}


@job
def series_figure(smk) -> None:
    """:func:`layersim.plots.series_figure` of a depth or width series with its first-PC shares."""
    sims = _by_instance(smk.input.results)
    shares = {table.attrs["store"]: table for table in map(read_pc_shares, smk.input.pca)}
    instances = list(smk.params.instances)
    draw_series_figure([sims[(i, i)] for i in instances], [shares[i] for i in instances], list(smk.params.labels), smk.output.figure, title=smk.params.title, max_labels=smk.params.max_labels)


@job
def block_structure(smk) -> None:
    """:func:`layersim.experiments.nguyen.largest_block` of every ResNet instance → CSV and figure."""
    threshold = smk.params.threshold
    pc1_threshold = PC1_SHARE_THRESHOLD
    sims = _by_instance(smk.input.results)
    shares = {table.attrs["store"]: table for table in map(read_pc_shares, smk.input.pca)}
    rows = []
    for entry in smk.params.instances:
        inst = entry["instance"]
        result = sims[(inst, inst)]
        layers = select_layers(list(result["layer_a"].values), smk.params.layers, what="block_structure layer pattern")
        cka = result["cka"].sel(layer_a=layers, layer_b=layers).values
        share = shares[inst]["pc1_share"].sel(layer=layers).values
        block = largest_block(cka, share, cka_threshold=threshold, pc1_threshold=pc1_threshold)
        inside = slice(block.start, block.stop)
        rows.append({
            **entry,
            "n_layers": block.n_layers,
            "block_start": layers[block.start] if block.size else "",
            "block_end": layers[block.stop - 1] if block.size else "",
            "block_size": block.size,
            "block_fraction": block.fraction,
            "block_mean_pc1_share": float(np.nanmean(share[inside])) if block.size else float("nan"),
            "block_min_cka": float(np.nanmin(cka[inside, inside])) if block.size else float("nan"),
            "max_pc1_share": float(np.nanmax(share)),
            "high_cka_run_size": largest_high_cka_run(cka, threshold).size,
        })
        if block.size:
            log.info("%s: block %s..%s, %d of %d layers", inst, layers[block.start], layers[block.stop - 1], block.size, block.n_layers)
        else:
            log.info("%s: no block (%d layers, max PC1 share %.2f)", inst, block.n_layers, np.nanmax(share))
    write_csv(rows, smk.output.table, [f"threshold: {threshold}", f"pc1_threshold: {pc1_threshold}", f"layers: {smk.params.layers}"], float_format="", lineterminator="\r\n")
    block_structure_figure(rows, smk.output.figure, threshold=threshold, pc1_threshold=pc1_threshold, depth_width=smk.params.depth_width, width_depths=list(smk.params.width_depths))


@job
def cross_seed_figure(smk) -> None:
    """:func:`layersim.plots.grid_figure`: per model, seed a, seed b, and seed a against seed b."""
    sims = _by_instance(smk.input.results)
    rows = list(smk.params.rows)
    cells = [[(a, a), (b, b), (a, b)] for a, b in rows]
    results = {(i, j): sims[pair] for i, row in enumerate(cells) for j, pair in enumerate(row)}
    grid_figure(results, smk.output.figure, row_labels=[a.split("-")[0] for a, _ in rows], col_labels=["seed a", "seed b", "a vs b"], row_title="", col_title="", title="Same architecture, different seeds (minibatch linear CKA)")
