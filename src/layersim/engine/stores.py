"""Minibatch CKA over activation stores, as a Dask graph (:func:`compare_stores`)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from layersim.engine.accumulator import MinibatchCKA, minibatch_rows
from layersim.engine.grams import BatchGrams, EstimatorError, NonFiniteInputError, UndefinedLayerWarning, _check_batch, _gram_numpy, _is_torch, _non_finite_detail
from layersim.parallel import balanced_blocks, single_blas_thread, thread_count, thread_pool

if TYPE_CHECKING:
    import xarray


def _store_grams(store, layers: list[str], rows: np.ndarray, dtype: str, device: str | None = None, batch: str | None = None) -> BatchGrams:
    """Task: the Grams of a block of layers for one minibatch (``batch``, in words), reading one
    layer at a time (on a torch ``device``: the block's minibatch is copied there).

    NaN or Inf in a layer is a :class:`NonFiniteInputError` naming the store, layer and batch.
    """
    dtype = np.dtype(dtype)
    n = len(rows)
    _check_batch(n)
    model = f"activation store {store.path}"
    if device is not None:
        try:
            return BatchGrams.from_layers([store.read_torch(layer, rows, device) for layer in layers], dtype, backend="torch")
        except NonFiniteInputError as err:
            raise err.located(model, layers, batch) from None
    grams = np.empty((len(layers), n * n), dtype=dtype)
    self_hsic = np.empty(len(layers))
    nonconstant = np.empty(len(layers), bool)
    for i, layer in enumerate(layers):
        x = store.read(layer, rows)
        self_hsic[i], nonconstant[i] = _gram_numpy(x, dtype, grams[i].reshape(n, n))
        if not np.isfinite(self_hsic[i]):
            raise NonFiniteInputError.of(model, [(i, repr(layer), _non_finite_detail(x, dtype))], batch)
    return BatchGrams(grams, n, self_hsic / (n * (n - 3)), nonconstant)


def _concat_grams(blocks: list[BatchGrams], order: list[int]) -> BatchGrams:
    """One model's Grams from its blocks; ``order[k]`` is the layer of the k-th concatenated row."""
    if _is_torch(blocks[0].grams):
        import torch

        grams = torch.cat([b.grams for b in blocks])
    else:
        grams = np.concatenate([b.grams for b in blocks])
    self_hsic = np.concatenate([b.self_hsic for b in blocks])
    nonconstant = np.concatenate([b.nonconstant for b in blocks])
    inverse = np.argsort(order)
    grams = grams[torch.from_numpy(inverse).to(grams.device)] if _is_torch(grams) else grams[inverse]
    return BatchGrams(grams, blocks[0].n, self_hsic[inverse], nonconstant[inverse])


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
    merged = [MinibatchCKA(s.dtype).merge(s) for s in groups[0]]
    for group in groups[1:]:
        for acc, other in zip(merged, group):
            acc.merge(other)
    return merged


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

    Returns
    -------
    dict
        ``(a, b)`` → ``xarray.Dataset`` with ``cka`` and ``hsic_sum`` ``(layer_a, layer_b)`` and
        the self-HSIC sums ``hsic_aa_sum (layer_a)``, ``hsic_bb_sum (layer_b)``.
    """
    import dask

    from layersim.store import ActivationStore, check_comparable

    if dtype not in ("float32", "float64"):
        raise EstimatorError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if device is not None:
        from layersim.device import torch_device

        device = torch_device(device)
    missing = sorted({m for pair in pairs for m in pair} - set(stores))
    if missing:
        raise EstimatorError(f"pairs name models without a store: {missing}")
    used = sorted({m for pair in pairs for m in pair}, key=list(stores).index)
    threads = thread_count(threads)
    cache_bytes = int(cache_mb * 2**20)
    # opened for this call: tasks share each store (and its in-memory cache) until it returns
    opened = {name: ActivationStore(stores[name], cache_bytes=cache_bytes) for name in used}
    first = opened[used[0]]
    for name in used[1:]:
        check_comparable(first, opened[name])
    batches = minibatch_rows(len(first), batch_size, passes)

    blocks, orders = {}, {}
    for name in used:
        layers = opened[name].layers
        sizes = [int(np.prod(opened[name].feature_shape(layer))) for layer in layers]
        # on the CPU at least one block per thread; a GPU takes a block in a few batched products
        min_blocks = 1 if device is not None else threads
        blocks[name] = [[layers[i] for i in block] for block in balanced_blocks(sizes, max(1, layer_block), min_blocks=min_blocks)]
        orders[name] = [layers.index(layer) for block in blocks[name] for layer in block]
    states = []
    for k, rows in enumerate(batches):
        batch = f"minibatch {k + 1} of {len(batches)} (batch_size {batch_size}, pass {k // (len(batches) // passes) + 1})"
        grams = {
            name: [dask.delayed(_store_grams, pure=True)(opened[name], block, rows, dtype, device, batch) for block in blocks[name]]
            for name in used
        }
        states.append(dask.delayed(_batch_states, pure=True)(grams, pairs, dtype, orders))
    while len(states) > 1:
        states = [
            dask.delayed(_merge_states, pure=True)(*states[i : i + split_every])
            for i in range(0, len(states), split_every)
        ]
    if scheduler_address:
        final = _run_on_scheduler(states[0], scheduler_address, scheduler_timeout)
    else:
        from layersim.progress import DaskTqdm

        # one BLAS thread per Dask thread (several multi-threaded BLAS calls oversubscribe the cores)
        bar = DaskTqdm(disable=not progress, desc="minibatch CKA")
        with single_blas_thread(), bar, thread_pool(threads, "dask") as pool:
            (final,) = dask.compute(states[0], scheduler="threads", pool=pool)

    results = {}
    for (a, b), acc in zip(pairs, final):
        acc.layer_names_a, acc.layer_names_b = opened[a].layers, opened[b].layers
        results[(a, b)] = _to_dataset(acc, opened[a], opened[b], batch_size=batch_size, passes=passes, dtype=dtype, device=device or "cpu (numpy)")
    return results


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


def _to_dataset(acc: MinibatchCKA, store_a, store_b, **attrs):
    import xarray as xr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedLayerWarning)
        cka = acc.compute()
    for w in caught:
        warnings.warn(f"{store_a.name} vs {store_b.name}: {w.message}", UndefinedLayerWarning, stacklevel=3)
    bad_a, bad_b = acc.undefined()
    coords = {"layer_a": list(store_a.layers), "layer_b": list(store_b.layers)}
    return xr.Dataset(
        {
            "cka": (("layer_a", "layer_b"), cka),
            "hsic_sum": (("layer_a", "layer_b"), acc.hsic_ab),
            "hsic_aa_sum": (("layer_a",), acc.hsic_aa),
            "hsic_bb_sum": (("layer_b",), acc.hsic_bb),
        },
        coords=coords,
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
