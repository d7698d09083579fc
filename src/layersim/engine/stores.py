"""Minibatch CKA over activation stores, as a Dask graph (:func:`compare_stores`)."""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import numpy as np

from layersim.device import torch_device
from layersim.engine.accumulator import MinibatchCKA, minibatch_rows
from layersim.engine.grams import BatchGrams, EstimatorError, NonFiniteInputError, UndefinedLayerWarning, _check_kernel, _gram_numpy, _is_torch, _non_finite_detail, gram_kernel_for
from layersim.parallel import balanced_blocks, single_blas_thread, thread_count, thread_pool

if TYPE_CHECKING:
    import xarray


def _store_grams(store, layers: list[str], rows: np.ndarray, dtype: str, device: str | None = None, batch: str | None = None, kernel: str = "syrk") -> BatchGrams:
    """Task: the Grams of a block of layers for one minibatch (``batch``, in words), reading one
    layer at a time, by the numpy Gram ``kernel`` (on a torch ``device``: the block's minibatch
    is copied there).

    NaN or Inf in a layer is a :class:`NonFiniteInputError` naming the store, layer and batch.
    """
    n = len(rows)
    model = f"activation store {store.path}"
    if device is not None:
        try:
            return BatchGrams.from_layers([store.read_torch(layer, rows, device) for layer in layers], dtype, backend="torch")
        except NonFiniteInputError as err:
            raise err.located(model, layers, batch) from None
    grams = np.empty((len(layers), n * (n - 1) // 2), dtype=dtype)
    self_hsic = np.empty(len(layers))
    nonconstant = np.empty(len(layers), bool)
    for i, layer in enumerate(layers):
        x = store.read(layer, rows)
        self_hsic[i], nonconstant[i] = _gram_numpy(x, dtype, grams[i], kernel)
        if not np.isfinite(self_hsic[i]):
            raise NonFiniteInputError.of(model, [(i, repr(layer), _non_finite_detail(x, dtype))], batch)
    return BatchGrams(grams, n, self_hsic / (n * (n - 3)), nonconstant)


def _concat_grams(blocks: list[BatchGrams], order: list[int]) -> BatchGrams:
    """One model's Grams from its blocks; ``order[k]`` is the layer of the k-th concatenated row."""
    if len(blocks) == 1 and order == sorted(order):  # already whole and in order (a Gram store's)
        return blocks[0]
    if _is_torch(blocks[0].grams):
        import torch

        grams = torch.cat([b.grams for b in blocks])
    else:
        grams = np.concatenate([b.grams for b in blocks])
    self_hsic = np.concatenate([b.self_hsic for b in blocks])
    nonconstant = np.concatenate([b.nonconstant for b in blocks])
    inverse = np.argsort(order)  # a numpy index for torch Grams too
    return BatchGrams(grams[inverse], blocks[0].n, self_hsic[inverse], nonconstant[inverse])


def _batch_states(
    grams: dict[str, list[BatchGrams]], pairs: list[tuple[str, str]], dtype: str, orders: dict[str, list[int]]
) -> list[MinibatchCKA]:
    """Task: one minibatch's accumulator state for every pair, from each model's Grams."""
    full = {name: _concat_grams(blocks, orders[name]) for name, blocks in grams.items()}
    states = []
    for a, b in pairs:
        acc = MinibatchCKA(dtype, threads=1)  # a Dask task: BLAS threads are the scheduler's
        acc.update_grams(full[a], full[a] if a == b else full[b])
        states.append(acc)
    return states


def _merge_states(*groups: list[MinibatchCKA]) -> list[MinibatchCKA]:
    """Task: element-wise merge of lists of per-pair states (a node of the tree reduction)."""
    return [functools.reduce(MinibatchCKA.merge, states, MinibatchCKA(states[0].dtype))
            for states in zip(*groups)]


def compare_stores(
    stores: dict[str, str],
    pairs: list[tuple[str, str]],
    *,
    batch_size: int = 256,
    passes: int = 10,
    dtype: str = "float32",
    threads: int | None = None,
    layer_block: int = 16,
    split_every: int = 8,
    cache_mb: float = 1024,
    scheduler_address: str | None = None,
    scheduler_timeout: float = 30,
    progress: bool = True,
    device: str | None = None,
    gram_kernel: str = "auto",
) -> dict[tuple[str, str], "xarray.Dataset"]:
    """Minibatch CKA between every layer pair of each given pair of activation stores, as the Dask
    graph of docs/performance.md (``split_every`` states a node of its tree reduction).

    Parameters
    ----------
    stores : dict
        Model name → path of its activation store (all with the same ``sample_id``).
    pairs : list of (str, str)
        Names to compare; ``(a, a)`` is a self-comparison.
    batch_size, passes : int
        Minibatches of ``batch_size`` from ``passes`` seeded permutations (:func:`minibatch_rows`).
    dtype : {"float32", "float64"}
        Precision of Grams and products; HSIC sums are float64 either way.
    threads : int, optional
        Threads of the local Dask scheduler (default: every CPU this process may run on).
    cache_mb : float
        Stores of at most this size (MiB) are read once and kept in memory, larger ones minibatch
        by minibatch.
    scheduler_address : str, optional
        A running ``distributed`` scheduler (``tcp://host:8786``) to run on instead of local threads.
    scheduler_timeout : float
        Seconds to wait for that scheduler to answer before giving up with an error.
    device : str, optional
        A torch device (see :func:`layersim.device.torch_device`): Grams and products are
        computed there with the torch backend, and cached stores kept there. Default: numpy.
    gram_kernel : str
        The numpy Gram kernel (``layersim.engine.grams.GRAM_KERNELS``), or ``"auto"``: the fastest
        on this machine (:func:`~layersim.engine.grams.gram_kernel_for`), chosen once for the call.

    Returns
    -------
    dict
        ``(a, b)`` → ``xarray.Dataset`` with ``cka`` and ``hsic_sum`` ``(layer_a, layer_b)`` and
        the self-HSIC sums ``hsic_aa_sum (layer_a)``, ``hsic_bb_sum (layer_b)``.
    """
    from layersim.store import ActivationStore, check_comparable

    _check_dtype(dtype)
    threads = thread_count(threads)
    # opened for this call: tasks share each store (and its in-memory cache) until it returns
    cache_bytes = int(cache_mb * 2**20)
    opened = _open_models(pairs, stores, "a store",
                          lambda path: ActivationStore(path, cache_bytes=cache_bytes), check_comparable)
    tasks, orders, device, _ = _gram_tasks(opened, batch_size, passes, dtype, threads, layer_block, device,
                                           gram_kernel)
    attrs = {"batch_size": batch_size, "passes": passes, "dtype": dtype, "device": device or "cpu (numpy)"}
    run = (threads, scheduler_address, scheduler_timeout, progress)
    return _pair_results(opened, pairs, tasks, orders, dtype, attrs, split_every, run)


def write_gram_store(
    store: str,
    path: str,
    *,
    batch_size: int = 256,
    passes: int = 10,
    dtype: str = "float32",
    threads: int | None = None,
    layer_block: int = 16,
    cache_mb: float = 1024,
    scheduler_address: str | None = None,
    scheduler_timeout: float = 30,
    progress: bool = True,
    device: str | None = None,
    gram_kernel: str = "auto",
):
    """The U-centred Grams of every layer of one activation store for every minibatch of
    :func:`minibatch_rows`, written as a Gram store at ``path`` (``layersim.store.GramStore``):
    what :func:`compare_stores` computes per model, kept so that every pair the model is in
    reuses it (:func:`compare_gram_stores`). Parameters as :func:`compare_stores`."""
    import dask

    from layersim.io import atomic_write
    from layersim.store import ActivationStore, StoreError, create_gram_store, finish_gram_store

    _check_dtype(dtype)
    threads = thread_count(threads)
    opened = ActivationStore(store, cache_bytes=int(cache_mb * 2**20))
    name = opened.name
    tasks, orders, device, kernel = _gram_tasks({name: opened}, batch_size, passes, dtype, threads,
                                                layer_block, device, gram_kernel)
    attrs = {"model": name, "passes": passes, "dtype": dtype, "device": str(device or "cpu (numpy)"), "gram_kernel": "torch" if device is not None else kernel}

    def write(tmp):
        create_gram_store(tmp, layers=opened.layers, n=batch_size, n_batches=len(tasks), dtype=dtype, sample_id=opened.sample_id, attrs=attrs)
        write_batch = dask.delayed(_write_gram_batch, pure=True)
        written = [write_batch(str(tmp), k, grams[name], orders[name]) for k, grams in enumerate(tasks)]
        stats = dask.delayed(list, pure=True)(written)  # one node: (self_hsic, nonconstant) of each batch
        stats = _compute(stats, threads, scheduler_address, scheduler_timeout, progress, f"Grams of {name}")
        finish_gram_store(tmp, np.stack([s for s, _ in stats]), np.stack([c for _, c in stats]))

    return atomic_write(path, write, what="the Gram store", error=StoreError)


def compare_gram_stores(
    grams: dict[str, str],
    pairs: list[tuple[str, str]],
    *,
    threads: int | None = None,
    split_every: int = 8,
    progress: bool = True,
) -> dict[tuple[str, str], "xarray.Dataset"]:
    """:func:`compare_stores` from Gram stores (:func:`write_gram_store`; model name → path):
    the same sums in the same order, so the same result, without recomputing any Gram. The
    stores must hold the same samples, batch size, passes and dtype."""
    import dask

    from layersim.store import GramStore

    opened = _open_models(pairs, grams, "a Gram store", GramStore, _check_same_schedule)
    first = next(iter(opened.values()))
    read = dask.delayed(_read_gram_batch, pure=True)
    tasks = [{name: [read(store, k)] for name, store in opened.items()} for k in range(len(first.self_hsic))]
    orders = {name: list(range(len(store.layers))) for name, store in opened.items()}
    attrs = {"batch_size": first.n, **{key: first.attrs[key] for key in ("passes", "dtype", "device")}}
    run = (thread_count(threads), None, 0, progress)
    return _pair_results(opened, pairs, tasks, orders, first.attrs["dtype"], attrs, split_every, run)


def _open_models(pairs: list[tuple[str, str]], paths: dict[str, str], what: str, open_store, check) -> dict:
    """Model name → ``open_store(path)`` for the models ``pairs`` names, in the order of ``paths``,
    each ``check``-ed against the first; a model without a path is an :class:`EstimatorError`."""
    named = {m for pair in pairs for m in pair}
    missing = sorted(named - set(paths))
    if missing:
        raise EstimatorError(f"pairs name models without {what}: {missing}")
    opened = {name: open_store(paths[name]) for name in sorted(named, key=list(paths).index)}
    first, *others = opened.values()
    for store in others:
        check(first, store)
    return opened


def _gram_tasks(opened: dict, batch_size: int, passes: int, dtype: str, threads: int, layer_block: int,
                device, kernel: str) -> tuple[list[dict], dict[str, list[int]], str | None, str]:
    """The Grams of every minibatch of :func:`minibatch_rows` as Dask tasks (per minibatch, model
    name → its layer blocks' tasks), each model's layer of each row, the torch device (``None``:
    numpy) and the numpy Gram kernel (``"auto"``: the fastest here, measured once per process;
    not at all for a torch device, which does not use one)."""
    import dask

    device = None if device is None else torch_device(device)
    batches = minibatch_rows(len(next(iter(opened.values()))), batch_size, passes)
    blocks, orders = {}, {}
    for name, store in opened.items():
        blocks[name], orders[name] = _layer_blocks(store, layer_block, 1 if device is not None else threads)
    if _check_kernel(kernel) == "auto":
        kernel = "syrk" if device is not None else gram_kernel_for(batch_size, dtype)
    grams = dask.delayed(_store_grams, pure=True)
    tasks = []
    for k, rows in enumerate(batches):
        pass_ = k // (len(batches) // passes) + 1
        batch = f"minibatch {k + 1} of {len(batches)} (batch_size {batch_size}, pass {pass_})"
        tasks.append({name: [grams(opened[name], block, rows, dtype, device, batch, kernel) for block in blocks[name]] for name in opened})
    return tasks, orders, device, kernel


def _pair_results(opened: dict, pairs, tasks: list[dict], orders: dict, dtype: str, attrs: dict,
                  split_every: int, run: tuple) -> dict:
    """``(a, b)`` → the CKA dataset of each pair from the Grams' ``tasks`` (per minibatch, model
    name → its blocks, rows in ``orders``): a state per minibatch, merged ``split_every`` at a
    time up a tree, computed by :func:`_compute` (``run``: its threads, scheduler and progress)."""
    import dask

    states = [dask.delayed(_batch_states, pure=True)(grams, pairs, dtype, orders) for grams in tasks]
    while len(states) > 1:
        states = [dask.delayed(_merge_states, pure=True)(*states[i : i + split_every]) for i in range(0, len(states), split_every)]
    final = _compute(states[0], *run, "minibatch CKA")
    return {(a, b): _to_dataset(acc, opened[a], opened[b], attrs) for (a, b), acc in zip(pairs, final)}


def _check_same_schedule(a, b) -> None:
    """Two Gram stores hold the Grams of the same minibatches (else one :class:`StoreError`)."""
    from layersim.store import StoreError, check_comparable

    check_comparable(a, b)
    for what, x, y in (
        ("batch_size", a.n, b.n),
        ("passes", a.attrs["passes"], b.attrs["passes"]),
        ("dtype", a.attrs["dtype"], b.attrs["dtype"]),
    ):
        if not np.array_equal(x, y):
            raise StoreError(
                f"Gram stores {a.path} and {b.path} are not comparable: their {what} differ; "
                "compute both from stores of the same samples with the same similarity settings"
            )


def _check_dtype(dtype: str) -> None:
    if dtype not in ("float32", "float64"):
        raise EstimatorError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _layer_blocks(store, layer_block: int, min_blocks: int) -> tuple[list[list[str]], list[int]]:
    """A store's layers in blocks balanced by size (a Dask task each; on the CPU at least one per
    thread, a GPU takes a block in a few batched products) and the layer of each row in order."""
    layers = store.layers
    sizes = [int(np.prod(store.feature_shape(layer))) for layer in layers]
    blocks = [[layers[i] for i in block] for block in balanced_blocks(sizes, max(1, layer_block), min_blocks=min_blocks)]
    return blocks, [layers.index(layer) for block in blocks for layer in block]


def _write_gram_batch(tmp: str, k: int, blocks: list[BatchGrams], order: list[int]):
    """Task: write minibatch ``k``'s Grams into the Gram store at ``tmp``; returns its
    ``(self_hsic, nonconstant)``."""
    from layersim.store import write_gram_batch

    full = _concat_grams(blocks, order)
    grams = full.grams.cpu().numpy() if _is_torch(full.grams) else full.grams
    write_gram_batch(tmp, k, grams)
    return full.self_hsic, full.nonconstant


def _read_gram_batch(store, k: int) -> BatchGrams:
    """Task: minibatch ``k``'s Grams from a Gram store."""
    return BatchGrams(store.batch(k), store.n, store.self_hsic[k], store.nonconstant[k])


def _compute(graph, threads: int, scheduler_address: str | None, scheduler_timeout: float, progress: bool, desc: str):
    """Run a Dask graph on a running scheduler, or on local threads with a progress bar."""
    if scheduler_address:
        return _run_on_scheduler(graph, scheduler_address, scheduler_timeout)
    import dask

    from layersim.progress import DaskTqdm

    # one BLAS thread per Dask thread (several multi-threaded BLAS calls oversubscribe the cores)
    bar = DaskTqdm(disable=not progress, desc=desc)
    with single_blas_thread(), bar, thread_pool(threads, "dask") as pool:
        return dask.compute(graph, scheduler="threads", pool=pool)[0]


def _run_on_scheduler(graph, address: str, timeout: float):
    """Run the graph on a running ``distributed`` scheduler; one clear error if it does not
    answer within ``timeout`` seconds (refused, unreachable or silent: distributed's own
    client waits without a bound for a listener that never answers)."""
    import asyncio

    from distributed import Client
    from distributed.core import rpc

    async def identity():
        scheduler = rpc(address, timeout=timeout)
        try:
            return await asyncio.wait_for(scheduler.identity(), timeout)
        finally:
            await scheduler.close_rpc()

    try:
        asyncio.run(identity())
    except (OSError, TimeoutError) as err:  # distributed's CommClosedError is an OSError
        reason = str(err).splitlines()[0] if str(err) else "no answer"
        raise EstimatorError(
            f"could not connect to the Dask scheduler at {address} within {timeout:g} s ({reason}); "
            "start it, fix similarity.scheduler_address, or set it to null for local threads"
        ) from None
    with Client(address, timeout=timeout) as client:
        return client.compute(graph).result()


def _to_dataset(acc: MinibatchCKA, store_a, store_b, attrs: dict):
    import xarray as xr

    acc.layer_names_a, acc.layer_names_b = store_a.layers, store_b.layers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedLayerWarning)
        cka = acc.compute()
    for w in caught:
        warnings.warn(f"{store_a.name} vs {store_b.name}: {w.message}", UndefinedLayerWarning, stacklevel=3)
    bad_a, bad_b = acc.undefined()
    return xr.Dataset(
        {
            "cka": (("layer_a", "layer_b"), cka),
            "hsic_sum": (("layer_a", "layer_b"), acc.hsic_ab),
            "hsic_aa_sum": (("layer_a",), acc.hsic_aa),
            "hsic_bb_sum": (("layer_b",), acc.hsic_bb),
        },
        coords={"layer_a": list(store_a.layers), "layer_b": list(store_b.layers)},
        attrs={
            "metric": "minibatch_linear_cka",
            "estimator": "unbiased HSIC (Song et al. 2012), sums over minibatches (Nguyen et al. 2021)",
            "model_a": store_a.name,
            "model_b": store_b.name,
            "n_batches": acc.n_batches,
            "n_samples": len(store_a),
            "undefined_layers_a": [l for l, bad in zip(store_a.layers, bad_a) if bad],
            "undefined_layers_b": [l for l, bad in zip(store_b.layers, bad_b) if bad],
            **attrs,
        },
    )
