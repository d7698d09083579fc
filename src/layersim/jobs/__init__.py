"""The one seam between Snakemake and the package (docs/design.md, The one seam): every rule runs
``workflow/scripts/job.py``, which calls :func:`run`, which calls the job function registered
under the rule's name in :data:`JOBS` with the ``snakemake`` object (anything with ``input``,
``output``, ``params``, ``log``, ``threads`` and ``wildcards`` will do).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import sys

from layersim.errors import LayersimError

log = logging.getLogger("layersim")
_console = sys.stderr  # the job's own stderr (Snakemake's console), while sys.stderr is the log


def _jobs(module: str, *functions: str) -> dict[str, str]:
    return {name: f"{module}.{name}" for name in functions}


# rule name → "<module of layersim.jobs>.<job function>", the rule's own name except for two extract rules
JOBS: dict[str, str] = {
    **_jobs("core", "train", "train_keras", "extract", "gram_kernel", "grams", "similarity", "heatmap", "self_similarity_grid", "metric_similarity", "functional", "metrics_figure"),
    **_jobs("nguyen", "pca", "series_figure", "block_structure", "cross_seed_figure"),
    **_jobs("kornblith", "identification", "identification_figure"),
    **_jobs("johnson", "johnson_table"),
    **_jobs("existence", "existence_proof"),
    **_jobs("checkpoints", "train_epochs", "checkpoint_compare", "checkpoints_summary"),
    "extract_epoch": "core.extract",
    **_jobs("ding", "ding_benchmark"),
    **_jobs("minigrid", "minigrid_train", "minigrid_compare", "minigrid_summary"),
    **_jobs("architectures", "architectures_init", "architectures_pairs", "architectures_summary"),
    "architectures_extract_untrained": "core.extract",
    **_jobs("representation_sets", "representation_train", "representation_extract", "representation_svm", "representation_tsne"),
}


def job_function(rule: str):
    """The job function of ``rule`` (a :class:`LayersimError` names an unregistered rule)."""
    if rule not in JOBS:
        raise LayersimError(f"no job is registered for rule {rule!r} (layersim.jobs.JOBS)")
    module, function = JOBS[rule].rsplit(".", 1)
    return getattr(importlib.import_module(f"layersim.jobs.{module}"), function)


def run(smk) -> None:
    """Run the job of the rule ``smk.rule`` in this (the rule's own) process."""
    func = job_function(smk.rule)
    for setup in getattr(func, "process_setup", ()):
        setup()
    func(smk)


def tell(message: str) -> None:
    """Write one line to the log and to the console."""
    log.warning(message)
    print(message, file=_console)


def job(func=None, *, process_setup=()):
    """Decorator of a job function: logging to the rule's log, one-line errors, exit status 1.

    ``process_setup``: callables that :func:`run` calls first, in the rule's own process only
    (never when the job function is called as a library function, e.g. in tests).
    """
    if func is None:
        return functools.partial(job, process_setup=process_setup)

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

    wrapper.process_setup = tuple(process_setup)
    return wrapper


def config_hash(*parts) -> str:
    """A short, stable hash of JSON-serialisable config parts (provenance)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_config(smk) -> dict:
    """The whole config of the job's workflow (empty when called without Snakemake). Settings
    read from it rather than from a rule parameter do not make earlier outputs stale."""
    return getattr(smk, "config", None) or {}


def job_device(smk) -> str:
    """The torch device of config ``device`` (``auto`` when unset), read by :func:`job_config`."""
    from layersim.device import torch_device

    return torch_device(job_config(smk).get("device", "auto"))


def train_torch_job(smk, dataset, *, epochs: int | None = None, checkpoint=None, **options) -> None:
    """``train_torch`` of the rule's arch, train settings (``epochs`` overriding) and seed → its outputs."""
    from layersim.train.torch import train_torch

    train = dict(smk.params.train) if epochs is None else {**dict(smk.params.train), "epochs": epochs}
    train_torch(
        dict(smk.params.arch), train, dataset, seed=int(smk.wildcards.seed), device=job_device(smk),
        checkpoint=checkpoint or smk.output.checkpoint, history=smk.output.history, threads=smk.threads,
        **options,
    )


def limit_threads(threads: int) -> None:
    """Keep TensorFlow to the job's threads (it must be set before TF starts)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))


def release_freed_blocks_to_the_os() -> None:
    """A fixed 1 MiB mmap threshold for glibc's malloc in the similarity job's process, so that freed
    shard-sized read buffers go back to the OS instead of growing per-thread arenas. A no-op without
    ``mallopt``."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = -3 (malloc.h)
    except (OSError, AttributeError):
        pass
