"""Jobs of the core stages: train, extract, similarity, metrics, figures."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from layersim.data import load_dataset
from layersim.errors import LayersimError
from layersim.io import write_json
from layersim.jobs import config_hash, job, job_config, job_device, limit_threads, release_freed_blocks_to_the_os, tell
from layersim.jobs import train_torch_job
from layersim.plots import grid_figure, heatmap_figure
from layersim.store import read_similarity, write_similarity


def _check_epoch(smk) -> None:
    """The checkpoint asked for must be the configured last epoch."""
    epochs = smk.params.train["epochs"]
    if int(smk.wildcards.epoch) != epochs:
        raise LayersimError(f"asked for epoch {smk.wildcards.epoch} but model {smk.wildcards.model} is configured for {epochs} epochs")


@job
def train(smk) -> None:
    """:func:`layersim.train.torch.train_torch`."""
    _check_epoch(smk)
    train_torch_job(smk, load_dataset(dict(smk.params.dataset)))


@job
def train_keras(smk) -> None:
    """:func:`layersim.train.keras.train_keras`."""
    from layersim.train.keras import train_keras as train

    _check_epoch(smk)
    limit_threads(smk.threads)
    dataset = load_dataset(dict(smk.params.dataset))
    train(dict(smk.params.arch), dict(smk.params.train), dataset, smk.output.checkpoint, smk.output.history, int(smk.wildcards.seed))


@job
def extract(smk) -> None:
    """Every layer over the evaluation split: ``extract_torch`` (``.pt``) or ``extract_keras`` (``.keras``)."""
    dataset = load_dataset(dict(smk.params.dataset))
    attrs = {
        "model": smk.wildcards.model,
        "dataset": dataset.name,
        "split": "eval",
        "config_hash": config_hash(smk.params.dataset),
    }
    layers = getattr(smk.params, "layers", None)  # config extract.layers (torch only)
    if str(smk.input.checkpoint).endswith(".keras"):
        from layersim.extract.keras import extract_keras

        if layers is not None:
            raise LayersimError(f"extract.layers applies to torch models only; {smk.wildcards.model} is a keras model (set extract.layers: null)")
        limit_threads(smk.threads)
        extract_keras(smk.input.checkpoint, dataset.eval, smk.output.store, smk.params.batch_size, attrs, shard_chunks=smk.params.shard_chunks, write_threads=max(1, smk.threads), dtype=smk.params.dtype)
        return
    from layersim.extract.torch import extract_torch

    extract_torch(smk.input.checkpoint, dataset.eval, smk.output.store, batch_size=smk.params.batch_size, shard_chunks=smk.params.shard_chunks, attrs=attrs, threads=smk.threads, layers=layers, device=job_device(smk), dtype=smk.params.dtype)


@job
def gram_kernel(smk) -> None:
    """:func:`layersim.engine.grams.measure_gram_kernels` at the CKA batch size → the fastest
    kernel's name and every kernel's time, as JSON."""
    from layersim.engine.grams import measure_gram_kernels, measurement_widths

    n, dtype = smk.params.batch_size, smk.params.dtype
    seconds = measure_gram_kernels(n, dtype, measurement_widths(n))
    fastest = min(seconds, key=seconds.get)
    write_json({"gram_kernel": fastest, "seconds": seconds, "batch_size": n, "dtype": dtype, "widths": list(measurement_widths(n))}, smk.output.kernel)
    tell(f"layersim gram_kernel: {fastest} (seconds per round: {', '.join(f'{k} {v:.4f}' for k, v in seconds.items())})")


@job(process_setup=[release_freed_blocks_to_the_os])
def grams(smk) -> None:
    """:func:`layersim.engine.write_gram_store` for one activation store, with the Gram kernel
    of similarity.gram_kernel (auto: the one the gram_kernel job chose)."""
    from layersim.engine import write_gram_store

    kernel = smk.params.gram_kernel
    if kernel == "auto":
        kernel = json.loads(Path(smk.input.kernel).read_text())["gram_kernel"]
    device = job_device(smk)
    write_gram_store(
        smk.input.store,
        smk.output.grams,
        batch_size=smk.params.batch_size,
        passes=smk.params.passes,
        dtype=smk.params.dtype,
        threads=smk.threads,
        layer_block=smk.params.layer_block,
        cache_mb=smk.params.cache_mb,
        scheduler_address=smk.params.scheduler_address,
        scheduler_timeout=job_config(smk).get("similarity", {}).get("scheduler_timeout", 30),  # not a param: no rerun when changed
        device=None if device == "cpu" else device,  # on the CPU, the numpy engine
        gram_kernel=kernel,
    )


@job
def similarity(smk) -> None:
    """:func:`layersim.engine.compare_gram_stores` for one pair of Gram stores."""
    from layersim.engine import UndefinedLayerWarning, compare_gram_stores

    a, b = smk.wildcards.a, smk.wildcards.b
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedLayerWarning)
        results = compare_gram_stores({a: smk.input.a, b: smk.input.b}, [(a, b)], threads=smk.threads)
    for w in caught:
        tell(f"layersim similarity: warning: {w.message}")
    write_similarity(results[(a, b)], smk.output.result)


@job
def heatmap(smk) -> None:
    """:func:`layersim.plots.heatmap_figure` for one similarity result."""
    heatmap_figure(read_similarity(smk.input.result), smk.output.figure, max_labels=smk.params.max_labels)


@job
def self_similarity_grid(smk) -> None:
    """:func:`layersim.plots.grid_figure` over depth × width."""
    by_instance = {r.attrs["model_a"]: r for r in map(read_similarity, smk.input.results)}
    results = {(i, j): by_instance[inst] for i, j, inst in smk.params.cells}
    grid_figure(results, smk.output.figure, row_labels=list(smk.params.depths), col_labels=[f"×{w}" for w in smk.params.widths], row_title="depth", col_title="width", title="Self-similarity (minibatch linear CKA)")


@job
def metric_similarity(smk) -> None:
    """:func:`layersim.layerwise.metric_matrix` for one metric and pair."""
    from layersim.layerwise import metric_matrix

    result = metric_matrix(smk.input.a, smk.input.b, smk.wildcards.metric, layer_stride=smk.params.layer_stride, max_samples=smk.params.max_samples, threads=smk.threads)
    if result.attrs["n_undefined"]:
        message = f"{smk.wildcards.metric} is undefined for {result.attrs['n_undefined']} layer pair(s) (NaN): " + "; ".join(result.attrs["undefined"][:5])
        tell(f"layersim metric_similarity: warning: {message}")
    write_similarity(result, smk.output.result)


@job
def functional(smk) -> None:
    """:func:`layersim.layerwise.functional_similarity` → JSON."""
    from layersim.layerwise import functional_similarity

    write_json(functional_similarity(smk.input.a, smk.input.b), smk.output.result)


@job
def metrics_figure(smk) -> None:
    """:func:`layersim.plots.metrics_figure` (metrics side by side)."""
    from layersim.plots import metrics_figure as draw

    draw([read_similarity(p) for p in smk.input.results], smk.output.figure, max_labels=smk.params.max_labels)
