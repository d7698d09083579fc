"""The activation store: one Zarr v3 group per trained model instance (the layout, in one place).

Layout, shard files and integrity checks: docs/design.md, "Activation store". Beyond it: a layer
may be stored as float16 (``write_activations(dtype=…)``; ``logits`` stays float32), and the
integrity record is the attribute ``layersim_integrity`` of the group ``integrity/``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

from layersim.version import __version__
from layersim.errors import LayersimError
from layersim.io import atomic_write
from layersim.parallel import balanced_blocks, thread_pool


class StoreError(LayersimError):
    """An activation store is missing, incomplete or not comparable with another."""


_DEFAULT_DIMS = {1: ("feature",), 3: ("channel", "height", "width")}
# How layers may be stored (``write_activations(dtype=…)``); they are read as float32. bfloat16
# is not among them: zarr 3.1 has no Zarr data type for it.
STORE_DTYPES = ("float32", "float16")
# shard files named c.0.0.0.0 in their layer's folder, not c/0/0/0/0: one file a shard instead of
# a file and four folders (creating many inodes is slow on ext4 right after deleting many)
_CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}


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
    write_threads: int = 1,
    overlap: bool = False,
    dtype: str = "float32",
) -> Path:
    """Write per-layer activations, batch by batch, into a new Zarr v3 group at ``path``, atomically.

    NaN or Inf in any layer's rows, or a full disk, is a :class:`StoreError` (naming the layer
    and rows); nothing is left behind.

    Parameters
    ----------
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
    write_threads : int
        Threads appending a batch's layers to their shard files (docs/performance.md).
    overlap : bool
        Append a batch while the next one is computed (memory: two batches), rather than between
        batches (docs/performance.md, "How extraction writes").
    dtype : {"float32", "float16"}
        How every layer but ``logits`` (always float32) is stored; read back as float32. A
        value beyond float16's range (±65504) is a :class:`StoreError` naming the layer.
    """
    if dtype not in STORE_DTYPES:
        raise StoreError(f"activation store dtype must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}")
    sample_id = np.asarray(sample_id, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n_total = len(sample_id)
    if len(labels) != n_total:
        raise StoreError(f"{len(labels)} labels for {n_total} sample ids")
    if not isinstance(write_threads, int) or write_threads < 1:
        raise StoreError(f"write_threads must be a positive integer, got {write_threads!r}")
    return atomic_write(path, lambda tmp: _write_store(tmp, Path(path), batches, sample_id, labels, attrs, dimension_names, chunk_rows, shard_chunks, write_threads, overlap, dtype), what="the activation store", error=StoreError)


def _write_store(tmp: Path, path: Path, batches, sample_id, labels, attrs, dimension_names, chunk_rows, shard_chunks, write_threads, overlap, dtype) -> None:
    """The body of :func:`write_activations`: the store, written at ``tmp``."""
    n_total = len(sample_id)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.attrs.update({**dict(attrs), "layersim_version": __version__, "complete": False})

    shard_files: dict[str, _ShardFiles] = {}  # layer → its shard files, appended to directly
    written = 0
    writer = thread_pool(write_threads, "store")
    pending = []  # the writers' current jobs
    layer_parts: list[list[str]] = []  # the layers each writer appends

    def create_arrays(shapes: dict[str, tuple]) -> None:
        """The first layer's array created by zarr; the others copy its metadata."""
        template = None
        for name, feat in shapes.items():
            dims = ("sample",) + tuple(f"{name}.{dim}" for dim in _feature_dims(name, len(feat), dimension_names))
            layer_dtype = "float32" if name == "logits" else dtype
            if template is not None:
                shard_files[name] = template.sibling(name, (n_total, *feat), dims, layer_dtype)
                continue
            array = root.create_array(
                name,
                shape=(n_total, *feat),
                chunks=(chunk_rows, *feat),
                shards=(chunk_rows * shard_chunks, *feat),
                dtype=layer_dtype,
                dimension_names=dims,
                compressors=None,
                fill_value=np.nan,
                chunk_key_encoding=_CHUNK_KEY_ENCODING,
                config={"write_empty_chunks": True},  # no per-chunk comparison with the fill value
            )
            template = shard_files[name] = _ShardFiles.of(array)
            if template is None:
                raise StoreError(f"internal: zarr {zarr.__version__} did not lay out {name!r} as expected")

    def append_layers(batch: dict[str, np.ndarray], names: list[str], first_row: int) -> None:
        for name in names:
            with np.errstate(over="ignore"):  # beyond float16's range: inf, refused next
                rows = np.ascontiguousarray(batch[name], dtype=shard_files[name].dtype)
            _check_finite(rows, name, first_row, path, batch[name])
            shard_files[name].append(rows)

    def to_writers(*jobs) -> None:
        """Give the writers their next jobs once they have finished the previous ones."""
        nonlocal pending
        for job in pending:
            job.result()  # re-raises a failed write
        pending = [writer.submit(*job) for job in jobs]

    try:
        for batch in batches:
            batch = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in batch.items()}
            if not shard_files:
                if "logits" not in batch:
                    raise StoreError("every batch must include 'logits'")
                _check_layer_names(list(batch))
                chunk_rows = chunk_rows or len(next(iter(batch.values())))
                create_arrays({name: value.shape[1:] for name, value in batch.items()})
                layers, row_bytes = list(shard_files), [files.row_bytes for files in shard_files.values()]
                parts = balanced_blocks(row_bytes, len(layers), min_blocks=write_threads)
                layer_parts = [[layers[i] for i in part] for part in parts]
                root.attrs["layers"] = list(batch)
            elif list(batch) != list(shard_files):
                raise StoreError("every batch must hold the same layers in the same order as the first")
            rows = len(next(iter(batch.values())))
            if any(len(value) != rows for value in batch.values()):
                counts = ", ".join(f"{name}: {len(value)}" for name, value in batch.items())
                raise StoreError(f"every layer of a batch must hold the same samples; this batch has {counts} rows")
            if written + rows > n_total:
                raise StoreError(f"the batches hold more rows than the {n_total} sample ids given")
            # the writers append this batch, each its share of the layers
            to_writers(*((append_layers, batch, names, written) for names in layer_parts))
            if not overlap:
                to_writers()  # the next batch is computed once this one is written
            written += rows
        to_writers()  # wait for the last jobs (re-raises a failed write)
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        for files in shard_files.values():
            files.close()
    if written != n_total:
        raise StoreError(f"wrote {written} rows but {n_total} sample ids were given")
    root.create_array("sample_id", data=sample_id, dimension_names=("sample",), compressors=None)
    root.create_array("labels", data=labels, dimension_names=("sample",), compressors=None)
    root.attrs["complete"] = True
    _record_integrity(tmp, {rel: entry for files in shard_files.values() for rel, entry in files.written.items()})


def _check_layer_names(names: list[str]) -> None:
    """Every layer is an array at the top of the store: its name must be a valid Zarr node name
    that is not one of the store's own arrays."""
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("__") or set(name) == {"."} or name in ("sample_id", "labels", _INTEGRITY):
            raise StoreError(
                f"layer name {name!r} cannot name an array of the activation store: it must be a non-empty string "
                f"without '/', not only dots, not starting with '__', and not 'sample_id', 'labels' or {_INTEGRITY!r}; rename the layer"
            )


def _check_finite(rows: np.ndarray, layer: str, first_row: int, path: Path, source: np.ndarray) -> None:
    """Raise :class:`StoreError` if ``rows`` as stored (from row ``first_row``) hold NaN or Inf;
    ``source``: the rows they were cast from (a finite value there that is not finite in float16
    ``rows`` was beyond float16's range). A non-finite sum is looked at element by element."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(rows.sum(dtype=np.promote_types(rows.dtype, np.float32))):  # float16: summed as float32
            return
    bad = np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(1))
    if len(bad) and rows.dtype == "<f2" and np.isfinite(source[bad[0]]).all():
        raise StoreError(
            f"layer {layer!r} has activations beyond {rows.dtype}'s range (±{float(np.finfo(rows.dtype).max):g}) in row "
            f"{first_row + int(bad[0])} while writing {path}: they cannot be stored as {rows.dtype}; store this model's "
            "activations as float32 (config extract.dtype: float32). No store was written"
        )
    if len(bad):
        raise StoreError(
            f"layer {layer!r} has NaN or Inf activations in {len(bad)} of rows {first_row}–{first_row + len(rows) - 1} "
            f"(the first: row {first_row + int(bad[0])}) while writing {path}: the model's outputs are not finite "
            "(a diverged training, or inputs out of range?); check the checkpoint and the data. No store was written"
        )


class _ShardFiles:
    """Direct reads and writes of one array's shard files, in the layout this module creates
    (why: docs/performance.md). In this layout (uncompressed little-endian float32 or float16, chunks
    split along ``sample`` only) a shard file is its rows' bytes as they lie in memory, the last chunk padded
    with the fill value, then the sharding spec's index (``(offset, length)`` of every chunk as
    little-endian uint64, ``2⁶⁴−1`` twice for a chunk past the array's end) and its CRC32C.
    """

    @classmethod
    def of(cls, array: zarr.Array) -> "_ShardFiles | None":
        """The direct reader and writer of ``array``, or ``None`` where its layout is another."""
        expected = ShardingCodec(
            chunk_shape=array.chunks,
            codecs=[BytesCodec(endian="little")],
            index_codecs=[BytesCodec(endian="little"), Crc32cCodec()],
            index_location="end",
        )
        if (
            not isinstance(array.store_path.store, LocalStore)
            or array.dtype.str not in ("<f4", "<f2")
            or tuple(array.metadata.codecs) != (expected,)
            or array.chunks[1:] != array.shape[1:]
            or array.shards[1:] != array.shape[1:]  # not None: the codecs are a sharding codec
        ):
            return None
        return cls(Path(array.store_path.store.root) / array.path, array.shape, array.dtype, array.chunks[0],
                   array.shards[0], float(array.fill_value), array.metadata.chunk_key_encoding)

    def __init__(self, directory: Path, shape: tuple, dtype, chunk_rows: int, shard_rows: int, fill_value,
                 chunk_key_encoding):
        self.dir, self.name = directory, directory.name
        self.shape, self.feature_shape = tuple(shape), tuple(shape[1:])
        self.dtype = np.dtype(dtype).newbyteorder("<")  # as stored
        self.chunk_rows, self.shard_rows = chunk_rows, shard_rows
        self.fill_value, self.chunk_key_encoding = fill_value, chunk_key_encoding
        self.row_bytes = int(np.prod(self.feature_shape, dtype=np.int64)) * self.dtype.itemsize
        self._shard, self._file, self._rows_written = 0, None, 0  # where append() is
        self._size = self._crc = 0  # of the shard file append() is writing
        self.written: dict[str, tuple[int, int]] = {}  # relpath() → (bytes, CRC32C) of every file append() finished

    def sibling(self, name: str, shape: tuple, dimension_names: tuple, dtype: str) -> "_ShardFiles":
        """A new array ``name`` beside this one, in its layout and chunk and shard sizes: writes
        its metadata, this array's document with the new shape, dimension names and dtype."""
        meta = json.loads((self.dir / "zarr.json").read_bytes())
        meta["shape"] = list(shape)
        meta["data_type"] = dtype
        meta["chunk_grid"]["configuration"]["chunk_shape"] = [self.shard_rows, *shape[1:]]
        meta["codecs"][0]["configuration"]["chunk_shape"] = [self.chunk_rows, *shape[1:]]
        meta["dimension_names"] = list(dimension_names)
        directory = self.dir.parent / name
        directory.mkdir()
        (directory / "zarr.json").write_text(json.dumps(meta, allow_nan=True, indent=zarr.config.get("json_indent")))
        return type(self)(directory, shape, dtype, self.chunk_rows, self.shard_rows, self.fill_value,
                          self.chunk_key_encoding)

    def path(self, shard: int) -> Path:
        return self.dir / self.chunk_key_encoding.encode_chunk_key((shard, *(0,) * len(self.feature_shape)))

    def relpath(self, shard: int) -> str:
        """``shard``'s file relative to the store (``<layer>/<chunk key>``)."""
        return f"{self.name}/{self.path(shard).name}"

    def _rows_in(self, shard: int) -> int:
        return min(self.shard_rows, self.shape[0] - shard * self.shard_rows)

    def _layout(self, shard: int) -> tuple[int, bytes]:
        """(bytes of chunk data, index with its checksum) of ``shard``'s file."""
        chunks = -(-self._rows_in(shard) // self.chunk_rows)  # the rest lies past the array's end
        chunk_bytes = self.chunk_rows * self.row_bytes
        index = np.full((self.shard_rows // self.chunk_rows, 2), 2**64 - 1, dtype="<u8")
        index[:chunks, 0] = np.arange(chunks, dtype=np.uint64) * chunk_bytes
        index[:chunks, 1] = chunk_bytes
        index_bytes = index.tobytes()
        return chunks * chunk_bytes, index_bytes + google_crc32c.value(index_bytes).to_bytes(4, "little")

    def append(self, rows: np.ndarray) -> None:
        """The array's next rows (C-contiguous, of :attr:`dtype`, from row 0 on, in order): written
        to the current shard's file as they come; a shard's file is finished (padding, index) with
        its last row."""
        if rows.shape[1:] != self.feature_shape:
            raise StoreError(f"internal: rows of shape {rows.shape[1:]} for {self.name}, whose rows are {self.feature_shape}")
        while len(rows):
            if self._file is None:
                path = self.path(self._shard)
                self._file, self._rows_written, self._size, self._crc = open(path, "wb"), 0, 0, 0
            take = min(len(rows), self._rows_in(self._shard) - self._rows_written)
            self._write(rows[:take])
            self._rows_written += take
            rows = rows[take:]
            if self._rows_written == self._rows_in(self._shard):
                data_bytes, index = self._layout(self._shard)
                padding = data_bytes // self.row_bytes - self._rows_written
                self._write(np.full((padding, *self.feature_shape), self.fill_value, dtype=self.dtype))
                self._write(np.frombuffer(index, np.uint8))
                self.close()
                self.written[self.relpath(self._shard)] = (self._size, self._crc)
                self._shard += 1

    def _write(self, data: np.ndarray) -> None:
        """Append C-contiguous ``data`` to the current shard file, adding it to the file's CRC32C."""
        self._file.write(data.data)
        self._crc = google_crc32c.extend(self._crc, data)
        self._size += data.nbytes

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # A checked read streams the file through CRC32C in blocks of about this many bytes, each
    # block's checksum taken while the block is in the CPU's cache (docs/performance.md).
    CHECK_BLOCK_BYTES = 1 << 20

    def read(self, shard: int, rows: np.ndarray, out: np.ndarray, check=None) -> bool:
        """Rows ``rows`` (sorted positions within ``shard``) into ``out`` (C-ordered float32,
        one row each), reading only those rows. ``False`` (nothing read) where the file is
        missing or its index is not this layout's. With ``check``, the whole file is read, block
        by block (the rows asked for go straight into ``out``; the others through one block-sized
        buffer), and ``check(bytes, CRC32C)`` of the whole file is called before this returns
        (an error it raises leaves ``out`` unusable).
        """
        data_bytes, index = self._layout(shard)
        path = self.path(shard)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return False
        with f:
            fd = f.fileno()
            size = os.fstat(fd).st_size
            if size != data_bytes + len(index) or os.pread(fd, len(index), data_bytes) != index:
                return False

            def read_into(buffer: np.ndarray, row: int) -> None:
                if os.preadv(fd, [buffer], row * self.row_bytes) != buffer.nbytes:
                    raise StoreError(f"{path} is shorter than its index says: the activation store is damaged; delete it and rerun the extract step")

            shard_rows = self._rows_in(shard)
            if check is None:
                for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1):  # consecutive rows: one read each
                    read_into(out[run[0] : run[-1] + 1], int(rows[run[0]]))
                return True
            crc = 0
            block_rows = max(1, self.CHECK_BLOCK_BYTES // self.row_bytes)
            whole = len(rows) == shard_rows and np.array_equal(rows, np.arange(shard_rows))
            buffer = None if whole else np.empty((min(block_rows, shard_rows), out.shape[1]), np.float32)
            bounds = np.searchsorted(rows, np.arange(0, shard_rows + block_rows, block_rows))
            for first, lo, hi in zip(range(0, shard_rows, block_rows), bounds, bounds[1:]):
                end = min(first + block_rows, shard_rows)
                block = out[first:end] if whole else buffer[: end - first]
                read_into(block, first)
                crc = google_crc32c.extend(crc, block)
                if not whole and hi > lo:  # rows within the block: valid by construction, so no bounds check
                    np.take(block, rows[lo:hi] - first, axis=0, out=out[lo:hi], mode="clip")
            rows_bytes = shard_rows * self.row_bytes  # then the padding and the index
            check(size, google_crc32c.extend(crc, os.pread(fd, size - rows_bytes, rows_bytes)))
        return True


class _Store:
    """What activation and Gram stores share: ``path``, ``sample_id``, and ``_options``, the
    arguments besides the path it was opened with."""

    _options: tuple = ()

    def __reduce__(self):  # pickled (to a Dask worker) as its path and options: reopened there
        return type(self), (str(self.path), *self._options)

    def __dask_tokenize__(self):
        return str(self.path), os.stat(self.path / "zarr.json").st_mtime_ns, *self._options

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    def __len__(self) -> int:
        return len(self.sample_id)


class ActivationStore(_Store):
    """Read access to a complete activation store, checked against its integrity record as
    docs/design.md, "Activation store", describes; any difference is one :class:`StoreError`.

    When all the store's layers together take at most ``cache_bytes``, each layer is read once,
    whole, and kept in memory; larger stores are read minibatch by minibatch (out of core).
    ``layers`` are the layer names in forward order (``"logits"`` last).
    """

    def __init__(self, path: str | os.PathLike, cache_bytes: int = 0):
        self.path = Path(path)
        self._options = (cache_bytes,)  # what it is reopened with besides its path
        self.layers: list[str] = []
        incomplete = (f"activation store {self.path} is incomplete (extraction did not finish); "
                      "delete it and rerun the extract step")
        no_record = (
            f"activation store {self.path} has no integrity record ({_INTEGRITY}/zarr.json): it was written by a "
            f"layersim older than {__version__}, or the record was deleted; its data cannot be trusted. Delete it "
            f"and rerun the extract step that wrote it (`snakemake --force {self.path}` with your usual options "
            "rebuilds it)"
        )
        store = weakref.ref(self)  # no reference cycle: a dropped store (and its cache) is freed at once
        self._integrity = _Integrity(self.path, "activation store", "extract", lambda rel: store()._where(rel),
                                        no_record if _says_complete(self.path) else incomplete)
        self._integrity.check_file("zarr.json")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
        except Exception as err:  # zarr raises several types for a non-group
            raise StoreError(f"{self.path} is not a Zarr group: {err}") from err
        self.attrs = dict(self.group.attrs)
        if not self.attrs.get("complete"):
            raise StoreError(incomplete)
        self.layers = list(self.attrs["layers"])
        top = set(self.layers)
        for name in ("sample_id", "labels", *self.layers):
            if f"{name}/zarr.json" not in self._integrity.files:
                raise self._integrity.damaged(f"{name}/zarr.json", "is not in the store's integrity record")
        self._integrity.check_files(lambda rel: rel.endswith("zarr.json") or rel.partition("/")[0] not in top)
        self._integrity.check_sizes()
        self.sample_id = self.group["sample_id"][:]
        self.labels = self.group["labels"][:]
        self._arrays: dict[str, zarr.Array] = {layer: self.group[layer] for layer in self.layers}
        self.nbytes = sum(array.nbytes for array in self._arrays.values())
        self.cached = 4 * sum(array.size for array in self._arrays.values()) <= cache_bytes  # held as float32
        self._cache: dict[str, np.ndarray] = {}
        self._device_cache: dict[tuple[str, str], object] = {}  # (layer, torch device) → tensor
        # direct reads of float32 ("<f4") layers on a little-endian host; None: zarr reads the layer
        self._shard_files = {layer: _ShardFiles.of(array) if array.dtype == np.float32 else None
                             for layer, array in self._arrays.items()}

    def feature_shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self._arrays[layer].shape[1:])

    def read(self, layer: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Rows of one layer (sorted row positions, or a slice with a positive step; default all),
        flattened to ``(len(rows), p)`` float32 (a float16 layer is converted). Read shard by shard:
        memory holds at most one shard of this layer besides the result."""
        if self.cached:
            if layer not in self._cache:
                self._cache[layer] = self._read_rows(layer, np.arange(len(self)))
            return self._cache[layer] if rows is None else self._cache[layer][rows]
        if rows is None:
            rows = slice(None)
        return self._read_rows(layer, np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows))

    def _read_rows(self, layer: str, rows: np.ndarray) -> np.ndarray:
        array = self._arrays[layer]
        shard_rows = (array.shards or array.chunks)[0]
        out = np.empty((len(rows), int(np.prod(array.shape[1:]))), dtype=np.float32)  # a float16 layer: converted
        if len(rows) == 0:
            return out
        if rows[0] < 0 or rows[-1] >= len(self):
            raise IndexError(f"rows {rows[0]}–{rows[-1]} asked of layer {layer!r}, which has rows 0–{len(self) - 1}")
        shard_files = self._shard_files[layer]
        shard_of = rows // shard_rows
        for part in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(shard_of)) + 1):
            shard, lo, hi = int(shard_of[part[0]]), rows[part[0]], rows[part[-1]] + 1
            if shard_files is not None:
                rel = shard_files.relpath(shard)
                checked = rel in self._integrity.verified
                check = None if checked else functools.partial(self._integrity.check, rel)
                if shard_files.read(shard, rows[part] - shard * shard_rows, out[part[0] : part[-1] + 1], check):
                    continue
                self._integrity.check_file(rel)  # missing or changed since it was checked?
            else:  # every file of the layer checked before zarr reads it
                self._integrity.check_files(lambda rel: rel.startswith(f"{layer}/"))
            try:
                block = array[lo:hi]
            except Exception as err:  # zarr raises several types for a damaged shard
                raise StoreError(f"{self.path}: rows {lo}–{hi - 1} of layer {layer!r} cannot be read ({err}); the store is damaged: delete it and rerun the extract step") from err
            out[part] = block.reshape(len(block), -1)[rows[part] - lo]
        return out

    def _where(self, rel: str) -> str:
        """What file ``rel`` of this store holds, in words (for error messages)."""
        top, _, rest = rel.partition("/")
        if rel == "zarr.json":
            return "the store's attributes"
        if top in ("sample_id", "labels", _INTEGRITY):
            return {"sample_id": "the sample ids", "labels": "the labels", _INTEGRITY: "the integrity record"}[top]
        if top not in self.layers:
            return ""
        shard = re.match(r"c[./](\d+)", rest)
        if shard is None:
            return f"layer {top!r}'s metadata" if rest == "zarr.json" else f"layer {top!r}"
        array = self.group[top]
        shard_rows = (array.shards or array.chunks)[0]
        first = int(shard[1]) * shard_rows
        return f"layer {top!r}, rows {first}–{min(first + shard_rows, array.shape[0]) - 1}"

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
    """Write a labelled similarity result (an ``xarray.Dataset``) as a Zarr v3 store, with an
    integrity record, atomically. :func:`read_similarity` (or ``xarray.open_zarr``) reads it."""
    if _INTEGRITY in dataset.variables:
        raise StoreError(f"a similarity result cannot hold a variable named {_INTEGRITY!r}; rename it")
    # layer names as variable-length strings (a specified Zarr v3 type; fixed-width is not)
    dataset = dataset.assign_coords({name: coord.values.astype(object) for name, coord in dataset.coords.items() if coord.dtype.kind == "U"})

    def write(tmp: Path) -> None:
        # consolidated metadata (zarr-python's extension to v3) lets plain xr.open_zarr(path) work
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            dataset.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=True)
        _record_integrity(tmp, {})

    return atomic_write(path, write, what="the similarity result", error=StoreError)


def read_similarity(path: str | os.PathLike):
    """Open a similarity result written by :func:`write_similarity` (loaded into memory), each
    of its files checked against its integrity record first."""
    import xarray as xr

    path = Path(path)
    no_record = (
        f"similarity result {path} has no integrity record ({_INTEGRITY}/zarr.json): it was written by a layersim "
        f"older than {__version__}, or is damaged; delete it and rerun the similarity step that wrote it "
        f"(`snakemake --force {path}` with your usual options rebuilds it)"
    )
    integrity = _Integrity(path, "similarity result", "similarity", _variable_of, no_record)
    integrity.check_files(lambda rel: True)
    return xr.open_zarr(str(path), zarr_format=3).load()


def _variable_of(rel: str) -> str:
    top, _, rest = rel.partition("/")
    return f"variable {top!r}" if rest and top != _INTEGRITY else ("the integrity record" if top == _INTEGRITY else "")


# Integrity records: every file's size and CRC32C

_INTEGRITY = "integrity"  # the group whose zarr.json records every other file of a store


def _file_checksum(path: Path) -> tuple[int, int]:
    """``(bytes, CRC32C)`` of a file."""
    size = crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            crc = google_crc32c.extend(crc, block)
            size += len(block)
    return size, crc


def _record_integrity(root: Path, known: Mapping[str, tuple[int, int]]) -> None:
    """Record the size and CRC32C of every file under ``root`` in ``root/integrity/zarr.json``
    (a Zarr group whose attribute ``layersim_integrity`` holds them). ``known``: files whose
    ``(bytes, CRC32C)`` were taken while they were written; the others are read back."""
    files = {}
    for file in filter(Path.is_file, root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        entry = known.get(rel)
        files[rel] = list(entry if entry is not None and entry[0] == file.stat().st_size else _file_checksum(file))
    record = {"zarr_format": 3, "node_type": "group", "attributes": {"layersim_integrity": {"checksum": "crc32c", "files": dict(sorted(files.items()))}}}
    (root / _INTEGRITY).mkdir()
    (root / _INTEGRITY / "zarr.json").write_text(json.dumps(record, separators=(",", ":")))


def _says_complete(root: Path) -> bool:
    """Whether ``root/zarr.json`` reads as a group whose ``complete`` attribute is true."""
    try:
        return json.loads((root / "zarr.json").read_bytes())["attributes"]["complete"] is True
    except Exception:
        return False


class _Integrity:
    """The size and CRC32C every file of a store had when it was written, and checks of the
    files against them; every difference is one :class:`StoreError` naming the store, what
    the file holds (``where(relative path)``) and what to do."""

    def __init__(self, root: Path, kind: str, step: str, where, missing: str):
        """The integrity record of the ``kind`` at ``root``, written by the ``step`` step;
        ``missing``: the error where it has none."""
        if not root.exists():
            raise StoreError(f"{kind} {root} does not exist; run the {step} step first")
        self.root, self.kind, self.remedy, self.where = root, kind, f"the {step} step that wrote it", where
        self.verified: set[str] = set()  # files whose checksum was checked
        try:
            raw = (root / _INTEGRITY / "zarr.json").read_bytes()
        except FileNotFoundError:
            raise StoreError(missing) from None
        try:
            files = json.loads(raw)["attributes"]["layersim_integrity"]["files"]
            self.files = {str(rel): (int(size), int(crc)) for rel, (size, crc) in files.items()}
        except Exception:
            raise self.damaged(f"{_INTEGRITY}/zarr.json", "cannot be read as an integrity record") from None

    def damaged(self, rel: str, problem: str) -> StoreError:
        try:
            where = self.where(rel)
        except Exception:  # the store's own metadata may be what is damaged
            where = ""
        return StoreError(
            f"{self.kind} {self.root} is damaged: {rel}{f' ({where})' if where else ''} {problem}; delete it and rerun "
            f"{self.remedy} (`snakemake --force {self.root}` with your usual options rebuilds it)"
        )

    def check_sizes(self) -> None:
        """Every recorded file is there, with its size."""
        for rel, (size, _) in self.files.items():
            try:
                actual = os.stat(self.root / rel).st_size
            except FileNotFoundError:
                raise self.damaged(rel, "is missing") from None
            if actual != size:
                raise self.damaged(rel, f"has {actual:,} bytes where {size:,} were written")

    def check_files(self, wanted) -> None:
        """Check, whole, every recorded file ``rel`` for which ``wanted(rel)``, unless checked already."""
        for rel in self.files:
            if wanted(rel) and rel not in self.verified:
                self.check_file(rel)

    def check_file(self, rel: str) -> None:
        """Read file ``rel`` whole and check its size and checksum."""
        try:
            size, crc = _file_checksum(self.root / rel)
        except FileNotFoundError:
            raise self.damaged(rel, "is missing") from None
        self.check(rel, size, crc)

    def check(self, rel: str, size: int, crc: int) -> None:
        """File ``rel`` read as ``size`` bytes whose checksum is ``crc`` (then in :attr:`verified`)."""
        if rel not in self.files:
            raise self.damaged(rel, "is not in the store's integrity record")
        want_size, want_crc = self.files[rel]
        if size != want_size:
            raise self.damaged(rel, f"has {size:,} bytes where {want_size:,} were written")
        if crc != want_crc:
            raise self.damaged(rel, f"does not hold the bytes written (CRC32C {crc:08x}, written {want_crc:08x})")
        self.verified.add(rel)


# Gram stores: one instance's U-centred Grams for every minibatch of the CKA schedule


def create_gram_store(tmp: Path, *, layers: list[str], n: int, n_batches: int, dtype: str, sample_id: np.ndarray, attrs: Mapping) -> None:
    """Start a Gram store at ``tmp`` (its layout: docs/design.md, "Gram store"), filled by
    :func:`write_gram_batch` from any thread or process, then closed by :func:`finish_gram_store`."""
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    shape = (n_batches, len(layers), n * (n - 1) // 2)
    group.create_array(
        "grams", shape=shape, chunks=(1, *shape[1:]), dtype=dtype, compressors=None, fill_value=0,
        chunk_key_encoding=_CHUNK_KEY_ENCODING, dimension_names=("batch", "layer", "pair"), config={"write_empty_chunks": True},
    )
    group.create_array("sample_id", data=np.asarray(sample_id, dtype=np.int64), dimension_names=("sample",))
    group.attrs.update({**attrs, "layers": list(layers), "n_batches": n_batches, "batch_size": n, "layersim_version": __version__, "complete": False})


def write_gram_batch(tmp: Path, batch: int, grams: np.ndarray) -> None:
    """Write minibatch ``batch``'s Grams ``(L, n(n−1)/2)`` into the Gram store being written at ``tmp``."""
    zarr.open_array(str(Path(tmp) / "grams"), mode="r+")[batch] = grams


def finish_gram_store(tmp: Path, self_hsic: np.ndarray, nonconstant: np.ndarray) -> None:
    """Add the ``(batch, layer)`` self-HSIC values and nonconstant flags, mark the store
    complete and record every file's size and CRC32C."""
    group = zarr.open_group(str(tmp), mode="r+")
    group.create_array("self_hsic", data=np.asarray(self_hsic, dtype=np.float64), dimension_names=("batch", "layer"))
    group.create_array("nonconstant", data=np.asarray(nonconstant, dtype=bool), dimension_names=("batch", "layer"))
    group.attrs["complete"] = True
    _record_integrity(Path(tmp), {})


class GramStore(_Store):
    """Read access to a complete Gram store (:func:`create_gram_store`), checked against its
    integrity record: the small files on open, each minibatch's chunk file when it is read.
    ``layers``, ``sample_id``, ``self_hsic (batch, layer)``, ``nonconstant (batch, layer)`` and
    ``attrs`` (model, batch_size, passes, dtype, device, gram_kernel) are loaded on open."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        missing = (f"Gram store {self.path} is incomplete or has no integrity record; delete it and rerun "
                   "the grams step that wrote it")
        self._integrity = _Integrity(self.path, "Gram store", "grams", _gram_file, missing)
        self._integrity.check_files(lambda rel: not rel.startswith("grams/c."))
        self._integrity.check_sizes()
        group = zarr.open_group(str(self.path), mode="r")
        self.attrs = dict(group.attrs)
        if not self.attrs.get("complete"):
            raise StoreError(f"Gram store {self.path} is incomplete; delete it and rerun the grams step that wrote it")
        self.layers = list(self.attrs["layers"])
        self.n = int(self.attrs["batch_size"])
        self.dtype = np.dtype(group["grams"].dtype)
        self.sample_id = group["sample_id"][:]
        self.self_hsic = group["self_hsic"][:]
        self.nonconstant = group["nonconstant"][:]

    def batch(self, batch: int) -> np.ndarray:
        """Minibatch ``batch``'s Grams as ``(L, n(n−1)/2)``, its chunk file checked first."""
        rel = f"grams/c.{batch}.0.0"
        try:
            data = (self.path / rel).read_bytes()
        except FileNotFoundError:
            raise self._integrity.damaged(rel, "is missing") from None
        self._integrity.check(rel, len(data), google_crc32c.value(data))
        return np.frombuffer(data, dtype=self.dtype.newbyteorder("<")).reshape(len(self.layers), -1)


def _gram_file(rel: str) -> str:
    """What file ``rel`` of a Gram store holds, in words (for error messages)."""
    match = re.match(r"grams/c\.(\d+)\.", rel)
    return f"the Grams of minibatch {int(match[1]) + 1}" if match else ""
