"""The entry points of the workflow's rules: one function per stage.

Each takes the ``snakemake`` object that Snakemake's ``script:`` directive injects (anything
with ``input``, ``output``, ``params``, ``log``, ``threads`` and ``wildcards`` will do, so
they are tested without Snakemake), sends logging and progress bars to the rule's log, and
calls one package function. An input error ends the job with one line saying what was wrong
(exit status 1); Snakemake then removes the job's outputs and keeps everything else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import warnings

from layersim.errors import LayersimError

log = logging.getLogger("layersim")
_console = sys.stderr  # the job's own stderr (Snakemake's console), while sys.stderr is the log


def _tell(message: str) -> None:
    """Write one line to the log and to the console."""
    log.warning(message)
    print(message, file=_console)


def _rule(func):
    @functools.wraps(func)
    def wrapper(smk):
        global _console
        logfile = open(smk.log[0], "w") if smk.log else sys.stderr
        stderr = _console = sys.stderr
        sys.stderr = logfile  # tqdm and warnings go to the log too
        logging.basicConfig(stream=logfile, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
        logging.captureWarnings(True)
        try:
            func(smk)
        except LayersimError as err:
            message = f"layersim {func.__name__}: error: {err}"
            log.error(message)
            print(message, file=stderr)
            sys.exit(1)
        finally:
            sys.stderr = stderr
            if logfile is not stderr:
                logfile.close()

    return wrapper


def config_hash(*parts) -> str:
    """A short, stable hash of JSON-serialisable config parts (provenance)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_epoch(smk) -> None:
    """The checkpoint asked for must be the configured last epoch."""
    epochs = smk.params.train["epochs"]
    if int(smk.wildcards.epoch) != epochs:
        raise LayersimError(f"asked for epoch {smk.wildcards.epoch} but model {smk.wildcards.model} is configured for {epochs} epochs")


@_rule
def train(smk) -> None:
    """Rule ``train``: :func:`layersim.train.train_torch`."""
    from layersim.data import load_dataset
    from layersim.train import train_torch

    _check_epoch(smk)
    dataset = load_dataset(dict(smk.params.dataset))
    train_torch(dict(smk.params.arch), dict(smk.params.train), dataset, seed=int(smk.wildcards.seed), checkpoint=smk.output.checkpoint, history=smk.output.history, threads=smk.threads, device=_device(smk))


@_rule
def train_keras(smk) -> None:
    """Rule ``train_keras``: :func:`layersim.keras_train.train_keras`."""
    from layersim.data import load_dataset
    from layersim.keras_train import train_keras as train

    _check_epoch(smk)
    _limit_threads(smk.threads)
    dataset = load_dataset(dict(smk.params.dataset))
    train(dict(smk.params.arch), dict(smk.params.train), dataset, smk.output.checkpoint, smk.output.history, int(smk.wildcards.seed))


def _device(smk) -> str:
    """The torch device of config ``device`` (``auto`` when unset). Read from the config, not
    a rule parameter: moving a job to a GPU does not make its earlier outputs stale."""
    from layersim.device import torch_device

    return torch_device((getattr(smk, "config", None) or {}).get("device", "auto"))


def _limit_threads(threads: int) -> None:
    """Keep TensorFlow to the job's threads (it must be set before TF starts)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))


@_rule
def extract(smk) -> None:
    """Rule ``extract``: every layer over the evaluation split, with
    :func:`layersim.extract.extract_torch` (``.pt``) or :func:`layersim.keras_extract.extract_keras`
    (``.keras``)."""
    from layersim.data import load_dataset

    dataset = load_dataset(dict(smk.params.dataset))
    attrs = {
        "model": smk.wildcards.model,
        "dataset": dataset.name,
        "split": "eval",
        "config_hash": config_hash(smk.params.dataset),
    }
    layers = getattr(smk.params, "layers", None)  # config extract.layers (torch only)
    if str(smk.input.checkpoint).endswith(".keras"):
        from layersim.keras_extract import extract_keras

        if layers is not None:
            raise LayersimError(f"extract.layers applies to torch models only; {smk.wildcards.model} is a keras model (set extract.layers: null)")
        _limit_threads(smk.threads)
        extract_keras(smk.input.checkpoint, dataset.eval, smk.output.store, smk.params.batch_size, attrs, shard_chunks=smk.params.shard_chunks, write_threads=max(1, smk.threads))
        return
    from layersim.extract import extract_torch

    extract_torch(smk.input.checkpoint, dataset.eval, smk.output.store, batch_size=smk.params.batch_size, shard_chunks=smk.params.shard_chunks, attrs=attrs, threads=smk.threads, layers=layers, device=_device(smk))


@_rule
def similarity(smk) -> None:
    """Rule ``similarity``: :func:`layersim.engine.compare_stores` for one pair of stores."""
    from layersim.engine import UndefinedLayerWarning, compare_stores
    from layersim.store import write_similarity

    a, b = smk.wildcards.a, smk.wildcards.b
    device = _device(smk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedLayerWarning)
        results = compare_stores(
            {a: smk.input.a, b: smk.input.b},
            [(a, b)],
            batch_size=smk.params.batch_size,
            passes=smk.params.passes,
            dtype=smk.params.dtype,
            threads=smk.threads,
            layer_block=smk.params.layer_block,
            cache_mb=smk.params.cache_mb,
            scheduler_address=smk.params.scheduler_address,
            device=None if device == "cpu" else device,  # on the CPU, the numpy engine (BLAS ?syrk)
        )
    for w in caught:
        _tell(f"layersim similarity: warning: {w.message}")
    write_similarity(results[(a, b)], smk.output.result)


@_rule
def heatmap(smk) -> None:
    """Rule ``heatmap``: :func:`layersim.plots.heatmap_figure` for one similarity result."""
    from layersim.plots import heatmap_figure
    from layersim.store import read_similarity

    heatmap_figure(read_similarity(smk.input.result), smk.output.figure, max_labels=smk.params.max_labels)


@_rule
def grid(smk) -> None:
    """Rule ``self_similarity_grid``: :func:`layersim.plots.grid_figure` over depth × width."""
    from layersim.plots import grid_figure
    from layersim.store import read_similarity

    by_instance = {read_similarity(p).attrs["model_a"]: p for p in smk.input.results}
    results = {}
    for key, inst in dict(smk.params.cells).items():
        i, j = (int(v) for v in key.split(","))
        results[(i, j)] = read_similarity(by_instance[inst])
    grid_figure(results, smk.output.figure, row_labels=list(smk.params.depths), col_labels=[f"×{w}" for w in smk.params.widths], row_title="depth", col_title="width", title="Self-similarity (minibatch linear CKA)")


@_rule
def metric_similarity(smk) -> None:
    """Rule ``metric_similarity``: :func:`layersim.layerwise.metric_matrix` for one metric and pair."""
    from layersim.layerwise import metric_matrix
    from layersim.store import write_similarity

    result = metric_matrix(smk.input.a, smk.input.b, smk.wildcards.metric, layer_stride=smk.params.layer_stride, max_samples=smk.params.max_samples, threads=smk.threads)
    if result.attrs["n_undefined"]:
        message = f"{smk.wildcards.metric} is undefined for {result.attrs['n_undefined']} layer pair(s) (NaN): " + "; ".join(result.attrs["undefined"][:5])
        _tell(f"layersim metric_similarity: warning: {message}")
    write_similarity(result, smk.output.result)


@_rule
def functional(smk) -> None:
    """Rule ``functional``: :func:`layersim.layerwise.functional_similarity` → JSON."""
    from layersim.layerwise import functional_similarity
    from layersim.train import _atomic

    result = functional_similarity(smk.input.a, smk.input.b)
    _atomic(smk.output.result, lambda p: open(p, "w").write(json.dumps(result, indent=2)))


@_rule
def metrics_figure(smk) -> None:
    """Rule ``metrics_figure``: :func:`layersim.plots.metrics_figure` (metrics side by side)."""
    from layersim.plots import metrics_figure as draw
    from layersim.store import read_similarity

    draw([read_similarity(p) for p in smk.input.results], smk.output.figure, max_labels=smk.params.max_labels)


# --- Paper experiments: block structure (Nguyen et al. 2021) and layer identification
# --- (Kornblith et al. 2019). See docs/papers.md.


@_rule
def pca(smk) -> None:
    """Rule ``pca``: :func:`layersim.pca.pc_shares` (first-PC share per layer) → CSV."""
    from layersim.pca import pc_shares, write_pc_shares

    p = smk.params
    shares = pc_shares(smk.input.store, block_rows=p.block_rows, max_gram_features=p.max_gram_features, oversamples=p.oversamples, n_iter=p.n_iter)
    for s in shares:
        log.info("%s: p=%d pc1_share=%.4f (%s)", s.layer, s.n_features, s.share, s.method)
    write_pc_shares(shares, smk.output.table, attrs={"store": smk.wildcards.model + f"-s{smk.wildcards.seed}-e{smk.wildcards.epoch}"})


def _by_instance(paths) -> dict:
    from layersim.store import read_similarity

    out = {}
    for path in paths:
        result = read_similarity(path)
        out[(result.attrs["model_a"], result.attrs["model_b"])] = result
    return out


@_rule
def series_figure(smk) -> None:
    """Rule ``series_figure``: self-similarity heatmaps of a depth or width series with each
    model's first-PC share per layer beneath (:func:`layersim.plots.series_figure`)."""
    from layersim.pca import read_pc_shares
    from layersim.plots import series_figure as draw

    sims = _by_instance(smk.input.results)
    shares = {read_pc_shares(p).attrs["store"]: read_pc_shares(p) for p in smk.input.pca}
    instances = list(smk.params.instances)
    draw([sims[(i, i)] for i in instances], [shares[i] for i in instances], list(smk.params.labels), smk.output.figure, title=smk.params.title, max_labels=smk.params.max_labels)


@_rule
def block_structure(smk) -> None:
    """Rule ``block_structure``: the largest high-CKA block of every ResNet instance
    (:func:`layersim.pca.largest_block` on :func:`layersim.pca.block_layers`) → CSV and
    :func:`layersim.plots.block_structure_figure`."""
    import csv

    import numpy as np

    from layersim.pca import block_layers, largest_block, read_pc_shares
    from layersim.plots import block_structure_figure

    sims = _by_instance(smk.input.results)
    shares = {read_pc_shares(p).attrs["store"]: read_pc_shares(p) for p in smk.input.pca}
    rows = []
    for entry in smk.params.instances:
        inst = entry["instance"]
        result = sims[(inst, inst)]
        layers = block_layers(list(result["layer_a"].values), smk.params.layers)
        cka = result["cka"].sel(layer_a=layers, layer_b=layers).values
        block = largest_block(cka, smk.params.threshold)
        share = shares[inst]["pc1_share"].sel(layer=layers).values
        inside = share[block.start : block.stop]
        rows.append({
            **entry,
            "n_layers": block.n_layers,
            "block_start": layers[block.start],
            "block_end": layers[block.stop - 1],
            "block_size": block.size,
            "block_fraction": block.fraction,
            "block_mean_pc1_share": float(np.nanmean(inside)) if len(inside) else float("nan"),
            "max_pc1_share": float(np.nanmax(share)),
        })
        log.info("%s: block %s..%s size %d/%d", inst, layers[block.start], layers[block.stop - 1], block.size, block.n_layers)
    tmp = smk.output.table + ".partial"
    with open(tmp, "w", newline="") as f:
        f.write(f"# threshold: {smk.params.threshold}\n# layers: {smk.params.layers}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import os

    os.replace(tmp, smk.output.table)
    block_structure_figure(rows, smk.output.figure, threshold=smk.params.threshold, depth_width=smk.params.depth_width, width_depths=list(smk.params.width_depths))


@_rule
def cross_seed_figure(smk) -> None:
    """Rule ``cross_seed_figure``: per model, seed a with itself, seed b with itself and seed a
    against seed b (:func:`layersim.plots.grid_figure`)."""
    from layersim.plots import grid_figure

    sims = _by_instance(smk.input.results)
    rows = list(smk.params.rows)
    results = {}
    for i, (a, b) in enumerate(rows):
        results[(i, 0)], results[(i, 1)], results[(i, 2)] = sims[(a, a)], sims[(b, b)], sims[(a, b)]
    grid_figure(results, smk.output.figure, row_labels=[a.split("-")[0] for a, _ in rows], col_labels=["seed a", "seed b", "a vs b"], row_title="", col_title="", title="Same architecture, different seeds (minibatch linear CKA)")


@_rule
def identification(smk) -> None:
    """Rule ``identification``: :func:`layersim.identification.similarity_tensor` over the seeds of
    one model and :func:`layersim.identification.identification_accuracy` → Zarr + CSV."""
    from layersim.identification import identification_accuracy, similarity_tensor, write_accuracy_csv
    from layersim.train import _atomic

    paths = {path.split("/")[-1].removesuffix(".zarr"): path for path in smk.input.stores}
    sim = similarity_tensor(paths, layers=smk.params.layers, metrics=list(smk.params.metrics), max_samples=smk.params.max_samples, threads=smk.threads)
    rows = identification_accuracy(sim)
    for r in rows:
        log.info("%-16s %6.1f %%  (paper %5.1f %%)", r["label"], r["accuracy"], r["paper_accuracy"])
    _atomic(smk.output.similarity, lambda p: sim.to_zarr(p, mode="w"))
    write_accuracy_csv(rows, smk.output.table, attrs={"model": smk.wildcards.model, "networks": len(paths), "layers": ",".join(sim["layer_a"].values), "n_samples": sim.attrs["n_samples"]})


@_rule
def identification_figure(smk) -> None:
    """Rule ``identification_figure``: :func:`layersim.plots.identification_figure` of the table."""
    from layersim.identification import read_accuracy_csv
    from layersim.plots import identification_figure as draw

    draw(read_accuracy_csv(smk.input.table), smk.output.figure, title=smk.params.title)


# --- Functional-similarity papers (issue 9): entry points in layersim.experiments.entry.
from layersim.experiments.entry import *  # noqa: E402,F401,F403
