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


@_rule
def train(smk) -> None:
    """Rule ``train``: :func:`layersim.train.train_torch`."""
    from layersim.data import load_dataset
    from layersim.train import train_torch

    epochs = smk.params.train["epochs"]
    if int(smk.wildcards.epoch) != epochs:
        raise LayersimError(f"asked for epoch {smk.wildcards.epoch} but model {smk.wildcards.model} is configured for {epochs} epochs")
    dataset = load_dataset(dict(smk.params.dataset))
    train_torch(dict(smk.params.arch), dict(smk.params.train), dataset, seed=int(smk.wildcards.seed), checkpoint=smk.output.checkpoint, history=smk.output.history, threads=smk.threads)


@_rule
def train_keras(smk) -> None:
    """Rule ``train_keras``: :func:`layersim.keras_train.train_keras`."""
    from layersim.data import load_dataset
    from layersim.keras_train import train_keras as train

    epochs = smk.params.train["epochs"]
    if int(smk.wildcards.epoch) != epochs:
        raise LayersimError(f"asked for epoch {smk.wildcards.epoch} but model {smk.wildcards.model} is configured for {epochs} epochs")
    _limit_threads(smk.threads)
    dataset = load_dataset(dict(smk.params.dataset))
    train(dict(smk.params.arch), dict(smk.params.train), dataset, smk.output.checkpoint, smk.output.history, int(smk.wildcards.seed))


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
    if str(smk.input.checkpoint).endswith(".keras"):
        from layersim.keras_extract import extract_keras

        _limit_threads(smk.threads)
        extract_keras(smk.input.checkpoint, dataset.eval, smk.output.store, smk.params.batch_size, attrs, shard_chunks=smk.params.shard_chunks)
        return
    from layersim.extract import extract_torch

    extract_torch(smk.input.checkpoint, dataset.eval, smk.output.store, batch_size=smk.params.batch_size, shard_chunks=smk.params.shard_chunks, attrs=attrs, threads=smk.threads)


@_rule
def similarity(smk) -> None:
    """Rule ``similarity``: :func:`layersim.engine.compare_stores` for one pair of stores."""
    from layersim.engine import UndefinedLayerWarning, compare_stores
    from layersim.store import write_similarity

    a, b = smk.wildcards.a, smk.wildcards.b
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
