"""The activation store: one Zarr v3 group per trained model instance (the layout, in one place).

Layout of ``results/{exp}/activations/{model}-s{seed}-e{epoch}.zarr``::

    attrs: model, framework, seed, epoch, dataset, split, config_hash, layersim_version,
           layers (names in forward order, "logits" last), complete (True once fully written)
    sample_id   (sample,)               int64, the dataset index of every row
    labels      (sample,)               int64
    <layer>     (sample, *feature_dims) float32, one array per layer, dimension_names set
    logits      (sample, class)         float32 (also listed in ``layers``)

Every array is chunked along ``sample`` (``chunk_rows`` rows) and sharded (``shard_chunks``
chunks a shard). Rows are buffered and written one whole shard at a time (by a background
thread, while the next rows are computed), so every write is aligned to a shard boundary and
memory holds at most two shards of rows, whatever the number of samples. A shard's file is
written from the buffer as it is (``_shard_writer``: the bytes zarr would write, without zarr
3.1's three copies of every shard). ``complete`` is set only after the last shard of every
array is written; readers refuse a store without it.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import zarr

from layersim import __version__
from layersim.errors import LayersimError


class StoreError(LayersimError):
    """An activation store is missing, incomplete or not comparable with another."""


_DEFAULT_DIMS = {1: ("feature",), 3: ("channel", "height", "width")}


def _feature_dims(name: str, ndim: int, dimension_names: Mapping[str, tuple] | None) -> tuple[str, ...]:
    if dimension_names and name in dimension_names:
        dims = tuple(dimension_names[name])
    elif name == "logits" and ndim == 1:
        dims = ("class",)
    else:
        dims = _DEFAULT_DIMS.get(ndim, tuple(f"dim_{i}" for i in range(ndim)))
    if len(dims) != ndim:
        raise StoreError(f"layer {name!r}: {ndim} feature dims but dimension names {dims}")
    return dims


def write_activations(
    path: str | os.PathLike,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    sample_id: np.ndarray,
    labels: np.ndarray,
    attrs: Mapping,
    dimension_names: Mapping[str, tuple] | None = None,
    chunk_rows: int | None = None,
    shard_chunks: int = 4,
) -> Path:
    """Write per-layer activations, batch by batch, into a new Zarr v3 group at ``path``.

    Rows are copied into one ``(shard rows, *features)`` buffer per layer; a full shard is
    handed to a background thread that writes it (every layer, one whole-shard write each)
    while the next batches are computed and copied into a second set of buffers. Memory holds
    at most two shards of rows, whatever the number of samples.

    Parameters
    ----------
    path : path-like
        The store to create (``*.zarr``). It is written under a temporary name and renamed
        when complete, so a crash never leaves a store that looks finished.
    batches : iterable of dict
        One ``{layer_name: array (b, *feature_dims)}`` per batch, same keys in the same order
        every batch, including ``"logits"``; rows in the order of ``sample_id``.
    sample_id, labels : np.ndarray
        ``(N,)`` dataset indices and labels of all rows.
    attrs : mapping
        Provenance (model, framework, seed, epoch, dataset, split, config_hash, ...).
    dimension_names : mapping, optional
        Layer name → names of its feature dims (default ``channel, height, width`` for 3-D
        features, ``feature`` for 1-D, ``class`` for logits).
    chunk_rows : int, optional
        Rows per chunk (default: the size of the first batch).
    shard_chunks : int
        Chunks per shard.
    """
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    sample_id = np.asarray(sample_id, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n_total = len(sample_id)
    if len(labels) != n_total:
        raise StoreError(f"{len(labels)} labels for {n_total} sample ids")
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.attrs.update({**dict(attrs), "layersim_version": __version__, "complete": False})

    arrays: dict[str, zarr.Array] = {}
    shard_writers: dict[str, object] = {}  # layer → _shard_writer(array) (or None)
    shapes: dict[str, tuple] = {}  # layer → feature shape
    filling: dict[str, np.ndarray] = {}  # the shard being filled, per layer
    spare: dict[str, np.ndarray] = {}  # the other set of buffers (written by the writer thread)
    filled = written = shard_rows = 0
    writer = ThreadPoolExecutor(1, thread_name_prefix="layersim-store")
    pending = None  # the writer's current job

    def create_arrays() -> None:
        for name, feat in shapes.items():
            dims = ("sample",) + _feature_dims(name, len(feat), dimension_names)
            arrays[name] = root.create_array(
                name,
                shape=(n_total, *feat),
                chunks=(chunk_rows, *feat),
                shards=(shard_rows, *feat),
                dtype="float32",
                dimension_names=dims,
                compressors=None,
                fill_value=np.nan,
                config={"write_empty_chunks": True},  # no per-chunk comparison with the fill value
            )

    def write_shard(buffers: dict[str, np.ndarray], start: int, rows: int) -> None:
        if not arrays:
            create_arrays()
            shard_writers.update({name: _shard_writer(array) for name, array in arrays.items()})
        for name, array in arrays.items():
            _write_rows(array, start, buffers[name][:rows], shard_writers[name])

    def hand_over(rows: int) -> None:
        """Give the filled buffers to the writer (after it finished the previous shard)."""
        nonlocal pending, filling, spare, filled, written
        if pending is not None:
            pending.result()  # re-raises a failed write
        pending = writer.submit(write_shard, filling, written, rows)
        filling, spare = (spare or {k: np.empty_like(v) for k, v in filling.items()}), filling
        written += rows
        filled = 0

    try:
        for batch in batches:
            batch = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in batch.items()}
            if not shapes:
                if "logits" not in batch:
                    raise StoreError("every batch must include 'logits'")
                chunk_rows = chunk_rows or len(next(iter(batch.values())))
                shard_rows = chunk_rows * shard_chunks
                shapes.update({name: value.shape[1:] for name, value in batch.items()})
                filling = {name: np.empty((shard_rows, *feat), dtype=np.float32) for name, feat in shapes.items()}
                root.attrs["layers"] = list(batch)
            elif list(batch) != list(shapes):
                raise StoreError("every batch must hold the same layers in the same order as the first")
            rows = len(next(iter(batch.values())))
            if written + filled + rows > n_total:
                raise StoreError(f"the batches hold more rows than the {n_total} sample ids given")
            done = 0
            while done < rows:
                take = min(rows - done, shard_rows - filled)
                for name, value in batch.items():
                    filling[name][filled : filled + take] = value[done : done + take]
                filled += take
                done += take
                if filled == shard_rows:
                    hand_over(shard_rows)
        if filled:
            hand_over(filled)
        if pending is not None:
            pending.result()
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
    if written != n_total:
        raise StoreError(f"wrote {written} rows but {n_total} sample ids were given")
    root.create_array("sample_id", data=sample_id, dimension_names=("sample",), compressors=None)
    root.create_array("labels", data=labels, dimension_names=("sample",), compressors=None)
    root.attrs["complete"] = True
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _write_rows(array: zarr.Array, start: int, rows: np.ndarray, write_shard) -> None:
    """Write ``rows`` from row ``start`` of ``array``: one whole shard, or the array's last
    rows (``start`` on a shard boundary). By ``write_shard`` (see :func:`_shard_writer`) where
    there is one, else by zarr."""
    if write_shard is not None:
        write_shard(start // array.shards[0], rows)
    else:
        array[start : start + len(rows)] = rows


def _shard_writer(array: zarr.Array):
    """A writer of one shard of ``array``, ``write(shard, rows)``, that skips zarr's shard
    assembly; ``None`` where the array's layout is not the one it knows.

    zarr 3.1 writes a shard by filling every inner chunk with the fill value, copying its rows
    in and concatenating the chunks: three passes over the data before the file write, 2.4–4.7
    CPU-s/GiB measured here against 0.6 for the file write alone (zarr ≥ 3.2 has a fast path
    for whole shards, zarr-python#3793, but needs Python ≥ 3.12). In this store's layout
    (uncompressed little-endian float32, chunks split along ``sample`` only) a shard is its
    rows' bytes as they lie in memory, the last chunk padded with the fill value, followed by
    the index the sharding spec defines: ``(offset, length)`` of every chunk as little-endian
    uint64 (``2⁶⁴−1`` twice for a chunk past the array's end), then the index's CRC32C. That is
    what this writes, to the shard's file in the local store; ``tests/test_store.py`` checks
    the bytes against zarr's own.
    """
    import sys

    import google_crc32c
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
    from zarr.storage import LocalStore

    store = array.store_path.store
    feature_shape = array.shape[1:]
    expected = ShardingCodec(
        chunk_shape=array.chunks,
        codecs=[BytesCodec(endian="little")],
        index_codecs=[BytesCodec(endian="little"), Crc32cCodec()],
        index_location="end",
    )
    if (
        sys.byteorder != "little"
        or not isinstance(store, LocalStore)
        or array.dtype != np.float32
        or tuple(array.metadata.codecs) != (expected,)
        or array.chunks[1:] != feature_shape
        or array.shards is None
        or array.shards[1:] != feature_shape
    ):
        return None
    chunk_rows, shard_rows = array.chunks[0], array.shards[0]
    chunks_per_shard = shard_rows // chunk_rows
    chunk_bytes = chunk_rows * int(np.prod(feature_shape, dtype=np.int64)) * 4
    array_dir = Path(store.root) / array.path

    def write(shard: int, rows: np.ndarray) -> None:
        end = shard * shard_rows + len(rows)
        if not (len(rows) == shard_rows or end == array.shape[0]) or rows.shape[1:] != feature_shape or rows.dtype != np.float32 or not rows.flags.c_contiguous:
            raise StoreError(f"internal: shard {shard} of {array.path} must be written whole, as one C-ordered float32 array")
        chunks = -(-len(rows) // chunk_rows)  # the rest of the shard lies past the array's end
        index = np.full((chunks_per_shard, *(1,) * len(feature_shape), 2), 2**64 - 1, dtype="<u8")
        index[:chunks, ..., 0] = (np.arange(chunks, dtype=np.uint64) * chunk_bytes).reshape(-1, *(1,) * len(feature_shape))
        index[:chunks, ..., 1] = chunk_bytes
        index_bytes = index.tobytes()
        path = array_dir / array.metadata.encode_chunk_key((shard, *(0,) * len(feature_shape)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(rows.data)
            if len(rows) < chunks * chunk_rows:
                f.write(np.full((chunks * chunk_rows - len(rows), *feature_shape), array.fill_value, dtype="<f4").data)
            f.write(index_bytes)
            f.write(np.array(google_crc32c.value(index_bytes), dtype="<u4").tobytes())

    return write


class ActivationStore:
    """Read access to a complete activation store.

    Parameters
    ----------
    path : path-like
        A store written by :func:`write_activations`.
    cache_bytes : int
        When all the store's layers together take at most this many bytes, each layer is read
        once, whole, and kept in memory (minibatches then cost no further reads); larger
        stores are read minibatch by minibatch, shard by shard (out of core).

    Attributes
    ----------
    layers : list of str
        Layer names in forward order (``"logits"`` last).
    sample_id, labels : np.ndarray
    attrs : dict
    """

    def __init__(self, path: str | os.PathLike, cache_bytes: int = 0):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"activation store {self.path} does not exist; run the extract step first")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
        except Exception as err:  # zarr raises several types for a non-group
            raise StoreError(f"{self.path} is not a Zarr group: {err}") from err
        self.attrs = dict(self.group.attrs)
        if not self.attrs.get("complete"):
            raise StoreError(
                f"activation store {self.path} is incomplete (extraction did not finish); "
                "delete it and rerun the extract step"
            )
        self.layers: list[str] = list(self.attrs["layers"])
        self.sample_id = self.group["sample_id"][:]
        self.labels = self.group["labels"][:]
        self.nbytes = sum(self.group[layer].nbytes for layer in self.layers)
        self.cached = self.nbytes <= cache_bytes
        self._cache: dict[str, np.ndarray] = {}
        self._device_cache: dict[tuple[str, str], object] = {}  # (layer, torch device) → tensor

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    def __len__(self) -> int:
        return len(self.sample_id)

    def feature_shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self.group[layer].shape[1:])

    def read(self, layer: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Rows of one layer, flattened to ``(len(rows), p)`` float32.

        ``rows`` are sorted row positions (any order gives the same CKA as long as both
        models use the same one). They are read shard by shard, each as one contiguous
        range, so memory holds at most one shard of this layer besides the result.
        """
        if self.cached:
            if layer not in self._cache:
                whole = self.group[layer][:]
                self._cache[layer] = whole.reshape(len(whole), -1)
            return self._cache[layer] if rows is None else self._cache[layer][rows]
        array = self.group[layer]
        if rows is None:
            rows = slice(None)
        if isinstance(rows, slice):
            data = array[rows]
            return data.reshape(data.shape[0], -1)
        rows = np.asarray(rows)
        shard_rows = (array.shards or array.chunks)[0]
        out = np.empty((len(rows), int(np.prod(array.shape[1:]))), dtype=array.dtype)
        shard_of = rows // shard_rows
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for part in np.split(np.arange(len(rows)), bounds):
            lo, hi = rows[part[0]], rows[part[-1]] + 1
            block = array[lo:hi]
            out[part] = block.reshape(len(block), -1)[rows[part] - lo]
        return out

    def read_torch(self, layer: str, rows: np.ndarray, device: str):
        """:meth:`read` as a torch tensor on ``device``. A cached store keeps each layer on the
        device too (read and copied there once; the minibatch's rows are gathered there)."""
        import torch

        if not self.cached:
            return torch.from_numpy(self.read(layer, rows)).to(device)
        key = (layer, str(device))
        if key not in self._device_cache:
            self._device_cache[key] = torch.from_numpy(self.read(layer)).to(device)
        return self._device_cache[key][torch.from_numpy(np.asarray(rows)).to(device, non_blocking=True)]

    def iter_layers(self, rows: np.ndarray, layers: list[str] | None = None) -> Iterator[np.ndarray]:
        for layer in layers or self.layers:
            yield self.read(layer, rows)


def check_comparable(a: ActivationStore, b: ActivationStore) -> None:
    """Raise :class:`StoreError` unless both stores hold the same samples in the same order."""
    if len(a) != len(b) or not np.array_equal(a.sample_id, b.sample_id):
        n_diff = (
            int(np.sum(a.sample_id != b.sample_id)) if len(a) == len(b) else abs(len(a) - len(b))
        )
        raise StoreError(
            f"stores {a.path} and {b.path} are not comparable: their sample_id arrays differ "
            f"({len(a)} vs {len(b)} samples, {n_diff} differing); extract both from the same "
            "dataset split (same dataset, eval_fraction and split_seed)"
        )


def write_similarity(dataset, path: str | os.PathLike) -> Path:
    """Write a labelled similarity result (an ``xarray.Dataset``) as a Zarr v3 store.

    Written under a temporary name and renamed when complete. ``xarray.open_zarr(path)``
    gives it back with its ``layer_a``/``layer_b`` coordinates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    # layer names as variable-length strings (a specified Zarr v3 type; fixed-width is not)
    dataset = dataset.assign_coords({name: coord.values.astype(object) for name, coord in dataset.coords.items() if coord.dtype.kind == "U"})
    # consolidated metadata (zarr-python's extension to v3) lets plain xr.open_zarr(path) work
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        dataset.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=True)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def read_similarity(path: str | os.PathLike):
    """Open a similarity result written by :func:`write_similarity` (loaded into memory)."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise StoreError(f"similarity result {path} does not exist; run the similarity step first")
    return xr.open_zarr(str(path), zarr_format=3).load()
