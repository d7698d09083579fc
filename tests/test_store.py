"""The activation store layout, shard-aligned writes, and comparability checks."""

import numpy as np
import pytest
import xarray as xr
import zarr

from layersim import store as store_module
from layersim.store import ActivationStore, StoreError, check_comparable, read_similarity, write_activations, write_similarity


def make_batches(rng, n, sizes, feature_shape=(3, 4, 4)):
    start = 0
    data = {"conv": rng.normal(size=(n, *feature_shape)).astype(np.float32), "logits": rng.normal(size=(n, 5)).astype(np.float32)}
    batches = []
    for size in sizes:
        batches.append({k: v[start : start + size] for k, v in data.items()})
        start += size
    return data, batches


def test_roundtrip_layout(tmp_path):
    rng = np.random.default_rng(0)
    n = 70
    data, batches = make_batches(rng, n, [8] * 8 + [6])  # ragged last batch
    sample_id = rng.permutation(1000)[:n]
    labels = rng.integers(0, 5, n)
    path = write_activations(tmp_path / "m.zarr", iter(batches), sample_id=sample_id, labels=labels, attrs={"model": "m", "seed": 3}, shard_chunks=2)
    store = ActivationStore(path)
    assert store.layers == ["conv", "logits"]
    assert store.attrs["model"] == "m" and store.attrs["complete"] is True
    np.testing.assert_array_equal(store.sample_id, sample_id)
    np.testing.assert_array_equal(store.labels, labels)
    group = zarr.open_group(str(path), mode="r")
    conv = group["conv"]
    assert conv.metadata.dimension_names == ("sample", "conv.channel", "conv.height", "conv.width")  # per layer: xarray opens the store
    assert group["logits"].metadata.dimension_names == ("sample", "logits.class")
    assert conv.chunks == (8, 3, 4, 4) and conv.shards == (16, 3, 4, 4)
    np.testing.assert_array_equal(conv[:], data["conv"])
    rows = np.array([0, 5, 17, 18, 40, 69])
    np.testing.assert_array_equal(store.read("conv", rows), data["conv"][rows].reshape(len(rows), -1))
    assert not list(tmp_path.glob("*partial*"))


def written_by_zarr(store, tmp_path):
    """A copy of ``store`` whose layers zarr wrote: each array created by zarr anew, with the
    store's shape, chunks, shards, dtype and dimension names, and filled with its values."""
    import shutil

    copy = shutil.copytree(store, tmp_path / "zarr.zarr")
    source, group = zarr.open_group(str(store), mode="r"), zarr.open_group(str(copy), mode="r+")
    for name in source.attrs["layers"]:
        array = source[name]
        shutil.rmtree(copy / name)
        group.create_array(
            name, shape=array.shape, chunks=array.chunks, shards=array.shards, dtype=array.dtype, compressors=None,
            dimension_names=array.metadata.dimension_names, fill_value=np.nan,
            chunk_key_encoding={"name": "default", "separator": "."}, config={"write_empty_chunks": True},
        )[:] = array[:]
    return copy


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    "feature_shape,chunk_rows,shard_chunks,full_shards,last_rows",
    [((3, 4, 4), 5, 2, 2, 9), ((7,), 4, 3, 2, 5), ((7,), 4, 3, 0, 3), ((2, 3), 6, 1, 3, 0), ((2, 3), 6, 1, 1, 4)],
)
def test_shards_written_directly_are_byte_identical_to_zarrs(tmp_path, monkeypatch, assert_same_files, feature_shape, chunk_rows, shard_chunks, full_shards, last_rows, dtype):
    """Shards bypass zarr; the store is byte for byte the one zarr writes on its own, the last,
    partial shard (a padded chunk and chunks past the end) included, float16 layers (with
    float32 logits) too."""
    rng = np.random.default_rng(6)
    n = full_shards * chunk_rows * shard_chunks + last_rows  # the last shard: a padded chunk, chunks past the end
    data, batches = make_batches(rng, n, [3] * (n // 3) + [n % 3] * (n % 3 > 0), feature_shape)
    data["conv"][0, 0] = np.float32(1e-45) if dtype == "float32" else np.float32(6e-8)  # bytes, not values: a subnormal
    data["conv"][1, 0] = -0.0  # and -0.0 too (NaN is refused)
    args = dict(sample_id=np.arange(n), labels=np.arange(n) % 5, attrs={"model": "m"}, chunk_rows=chunk_rows, shard_chunks=shard_chunks, dtype=dtype)

    by_zarr = []
    original = zarr.Array.__setitem__

    def spy(self, key, value):
        by_zarr.append((self.path, key.start, key.stop))
        return original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", spy)
    direct = write_activations(tmp_path / "direct.zarr", batches, **args)
    assert by_zarr == []
    monkeypatch.undo()

    files = assert_same_files(direct, written_by_zarr(direct, tmp_path))
    assert any(f.parts[0] == "conv" and f.name.startswith("c.") for f in files)  # shard files c.0.0.0.0
    group = zarr.open_group(str(direct), mode="r")
    assert group["conv"].dtype == dtype and group["logits"].dtype == np.float32
    stored = data["conv"].astype(dtype).astype(np.float32)
    np.testing.assert_array_equal(ActivationStore(direct).read("conv"), stored.reshape(n, -1))


def test_layouts_the_direct_shard_writer_does_not_know_go_through_zarr(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=3)
    common = dict(shape=(8, 4), chunks=(2, 4), shards=(4, 4), fill_value=np.nan)
    assert store_module._ShardFiles.of(group.create_array("plain", dtype="float32", compressors=None, **common)) is not None
    assert store_module._ShardFiles.of(group.create_array("compressed", dtype="float32", **common)) is None
    assert store_module._ShardFiles.of(group.create_array("float64", dtype="float64", compressors=None, **common)) is None
    assert store_module._ShardFiles.of(group.create_array("split_features", dtype="float32", compressors=None, shape=(8, 4), chunks=(2, 2), shards=(4, 4))) is None
    assert store_module._ShardFiles.of(group.create_array("unsharded", dtype="float32", compressors=None, shape=(8, 4), chunks=(2, 4))) is None
    in_memory = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=3)
    assert store_module._ShardFiles.of(in_memory.create_array("plain", dtype="float32", compressors=None, **common)) is None


def test_rows_are_read_straight_from_the_shard_files_and_only_those(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    n = 61  # shards of 12 rows, the last one partial (1 row)
    data, batches = make_batches(rng, n, [4] * 15 + [1])
    path = write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(n), labels=np.zeros(n), attrs={}, chunk_rows=4, shard_chunks=3)
    read_bytes, pread_bytes = [], []
    original_preadv, original_pread = store_module.os.preadv, store_module.os.pread

    def counting_preadv(fd, buffers, offset):
        read_bytes.append(sum(memoryview(b).nbytes for b in buffers))
        return original_preadv(fd, buffers, offset)

    def counting_pread(fd, length, offset):
        pread_bytes.append(length)
        return original_pread(fd, length, offset)

    monkeypatch.setattr(store_module.os, "preadv", counting_preadv)
    monkeypatch.setattr(store_module.os, "pread", counting_pread)
    store = ActivationStore(path)
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda self, key: pytest.fail(f"zarr read {self.path}[{key}]"))
    row_bytes = 3 * 4 * 4 * 4
    np.testing.assert_array_equal(store.read("conv", np.array([0])), data["conv"][:1].reshape(1, -1))
    # a shard's first read checks its whole file: its 12 rows, then padding and index
    assert read_bytes == [12 * row_bytes] and 12 * row_bytes + pread_bytes[-1] == (path / "conv" / "c.0.0.0.0").stat().st_size
    store.read("conv")  # every shard checked: from now on only the rows asked for are read
    for rows in ([0], [60], [11, 12], [3, 4, 5, 9, 30, 31, 59, 60], sorted(rng.choice(n, 25, replace=False))):
        read_bytes.clear()
        rows = np.asarray(rows)
        np.testing.assert_array_equal(store.read("conv", rows), data["conv"][rows].reshape(len(rows), -1))
        assert sum(read_bytes) == len(rows) * row_bytes  # only the rows asked for
    np.testing.assert_array_equal(store.read("conv", slice(10, 30)), data["conv"][10:30].reshape(20, -1))
    np.testing.assert_array_equal(store.read("conv"), data["conv"].reshape(n, -1))
    monkeypatch.undo()
    cached = ActivationStore(path, cache_bytes=1 << 30)  # read once, whole, the same way
    assert cached.cached
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda self, key: pytest.fail(f"zarr read {self.path}[{key}]"))
    np.testing.assert_array_equal(cached.read("conv", np.array([2, 59])), data["conv"][[2, 59]].reshape(2, -1))


def test_a_first_checked_read_block_by_block_gives_the_rows_and_checks_every_byte(tmp_path, monkeypatch):
    """The first read of a shard streams its file in blocks (here of 5 rows: shards of 12 rows
    read as 5 + 5 + 2); the rows asked for come out exact, and damage in a row not asked for
    is still found."""
    rng = np.random.default_rng(9)
    n = 30  # shards of 12 rows: 12, 12, 6
    data, batches = make_batches(rng, n, [6] * 5)
    path = write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(n), labels=np.zeros(n), attrs={}, chunk_rows=6, shard_chunks=2)
    monkeypatch.setattr(store_module._ShardFiles, "CHECK_BLOCK_BYTES", 5 * 3 * 4 * 4 * 4)
    for rows in ([0], [4, 5], [11, 12, 29], [1, 2, 3, 6, 7, 10, 13, 20, 24, 25, 28], list(range(n))):
        rows = np.asarray(rows)
        np.testing.assert_array_equal(ActivationStore(path).read("conv", rows), data["conv"][rows].reshape(len(rows), -1))
    checked = ActivationStore(path)
    np.testing.assert_array_equal(checked.read("conv"), data["conv"].reshape(n, -1))
    for store in (ActivationStore(path), checked):  # row 30 would be the last shard's padding
        with pytest.raises(IndexError, match="rows 29–30 asked of layer 'conv', which has rows 0–29"):
            store.read("conv", np.array([29, 30]))
    shard = path / "conv" / "c.0.0.0.0"
    raw = np.fromfile(shard, dtype="<f4")
    raw[8 * 48 + 7] *= -1  # row 8: in the second block, not asked for below
    raw.tofile(shard)
    with pytest.raises(StoreError, match=r"conv/c\.0\.0\.0\.0 \(layer 'conv', rows 0–11\) does not hold the bytes written"):
        ActivationStore(path).read("conv", np.array([0, 11]))
    with pytest.raises(StoreError, match="does not hold the bytes written"):
        ActivationStore(path).read("conv")


def test_a_missing_or_truncated_shard_file_is_an_error_not_nans(tmp_path):
    rng = np.random.default_rng(8)
    _, batches = make_batches(rng, 20, [5] * 4)
    path = write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(20), labels=np.zeros(20), attrs={}, chunk_rows=5, shard_chunks=2)
    store = ActivationStore(path)
    moved = path / "conv" / "c.1.0.0.0"
    moved.rename(tmp_path / "shard")
    with pytest.raises(StoreError, match=r"c\.1\.0\.0\.0 \(layer 'conv', rows 10–19\) is missing; delete it and rerun the extract step"):
        store.read("conv", np.array([1, 12]))  # missing since the store was opened
    with pytest.raises(StoreError, match=r"c\.1\.0\.0\.0 \(layer 'conv', rows 10–19\) is missing; delete it and rerun the extract step"):
        ActivationStore(path)
    (tmp_path / "shard").rename(moved)
    first_shard = path / "conv" / "c.0.0.0.0"
    first_shard.write_bytes(first_shard.read_bytes()[:-30])  # truncated: no index at its end
    with pytest.raises(StoreError, match=r"c\.0\.0\.0\.0 \(layer 'conv', rows 0–9\) has 1,926 bytes where 1,956 were written; delete it and rerun the extract step"):
        store.read("conv", np.array([1, 2]))
    with pytest.raises(StoreError, match=r"c\.0\.0\.0\.0 \(layer 'conv', rows 0–9\) has 1,926 bytes where 1,956 were written; delete it and rerun the extract step"):
        ActivationStore(path)


def test_incomplete_store_is_refused(tmp_path):
    group = zarr.open_group(str(tmp_path / "half.zarr"), mode="w")
    group.attrs.update({"complete": False, "layers": ["conv"]})
    with pytest.raises(StoreError, match="incomplete.*rerun the extract step"):
        ActivationStore(tmp_path / "half.zarr")
    with pytest.raises(StoreError, match="does not exist"):
        ActivationStore(tmp_path / "nothing.zarr")


def test_failed_write_leaves_no_store(tmp_path):
    rng = np.random.default_rng(2)
    _, batches = make_batches(rng, 20, [10, 10])

    def broken():
        yield batches[0]
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_activations(tmp_path / "m.zarr", broken(), sample_id=np.arange(20), labels=np.zeros(20), attrs={})
    assert not (tmp_path / "m.zarr").exists()


def test_failed_shard_file_write_is_raised_and_leaves_no_store(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    _, batches = make_batches(rng, 40, [5] * 8)
    opened = []
    original_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith("conv/c.1.0.0.0"):  # conv's second shard
            raise OSError("No space left on device")
        handle = original_open(path, mode, *args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(store_module, "open", full_disk, raising=False)
    with pytest.raises(OSError, match="No space left"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(40), labels=np.zeros(40), attrs={}, chunk_rows=5, shard_chunks=4)
    assert not (tmp_path / "m.zarr").exists()
    assert opened and all(handle.closed for handle in opened)


def test_a_batch_is_written_while_the_next_one_is_computed(tmp_path, monkeypatch):
    """The shard files of batch k are appended while the producer computes batch k + 1: here
    the append of the first batch waits until the producer is asked for the second one (one
    thread doing both would never get there), and the store is still the data."""
    import threading

    rng = np.random.default_rng(5)
    data, batches = make_batches(rng, 40, [10] * 4)
    second_requested = threading.Event()
    original_append = store_module._ShardFiles.append

    def append(self, rows):
        if self.name == "conv" and not second_requested.is_set():
            assert second_requested.wait(timeout=10), "batch 1 was written before batch 2 was asked for"
        return original_append(self, rows)

    def producer():
        yield batches[0]
        second_requested.set()
        yield from batches[1:]

    monkeypatch.setattr(store_module._ShardFiles, "append", append)
    write_activations(tmp_path / "m.zarr", producer(), sample_id=np.arange(40), labels=np.zeros(40), attrs={}, chunk_rows=10, shard_chunks=2, overlap=True)
    store = ActivationStore(tmp_path / "m.zarr")
    np.testing.assert_array_equal(store.read("conv"), data["conv"].reshape(40, -1))
    np.testing.assert_array_equal(store.read("logits"), data["logits"])


def test_without_overlap_a_batch_is_on_disk_before_the_next_one_is_computed(tmp_path, monkeypatch):
    """By default the forward pass and the writes take turns: every layer's rows of batch k are
    appended before the producer is asked for batch k + 1 (the appends are slowed down, so a writer
    still busy in the background would be seen), and the store is still the data."""
    import time

    rng = np.random.default_rng(5)
    data, batches = make_batches(rng, 40, [10] * 4)
    events, appended = [], {"conv": 0, "logits": 0}  # appended: rows so far, per layer
    original_append = store_module._ShardFiles.append

    def append(self, rows):
        time.sleep(0.02)
        events.append(("append", self.name, appended[self.name]))
        appended[self.name] += len(rows)
        return original_append(self, rows)

    def producer():
        for k, batch in enumerate(batches):
            events.append(("compute", k))
            yield batch

    monkeypatch.setattr(store_module._ShardFiles, "append", append)
    write_activations(tmp_path / "m.zarr", producer(), sample_id=np.arange(40), labels=np.zeros(40), attrs={}, chunk_rows=10, shard_chunks=2, write_threads=2)
    computed = [i for i, event in enumerate(events) if event[0] == "compute"] + [len(events)]
    appends_after = [sorted(events[i + 1 : j]) for i, j in zip(computed, computed[1:])]  # per batch
    assert appends_after == [[("append", "conv", 10 * k), ("append", "logits", 10 * k)] for k in range(4)]
    store = ActivationStore(tmp_path / "m.zarr")
    np.testing.assert_array_equal(store.read("conv"), data["conv"].reshape(40, -1))
    np.testing.assert_array_equal(store.read("logits"), data["logits"])


def test_write_threads_append_layers_at_once_and_write_the_same_store(tmp_path, monkeypatch, assert_same_files):
    """With two write threads a batch's layers are appended by both at the same time (each
    thread's first append waits for the other's: one thread alone never gets past it), and the
    store is byte for byte the one a single writer writes."""
    import threading

    rng = np.random.default_rng(9)
    data = {f"layer{i}": rng.normal(size=(30, 2, 3 + i)).astype(np.float32) for i in range(5)}
    data["logits"] = rng.normal(size=(30, 4)).astype(np.float32)
    batches = [{k: v[s : s + 10] for k, v in data.items()} for s in range(0, 30, 10)]
    args = dict(sample_id=np.arange(30), labels=np.zeros(30), attrs={"model": "m"}, chunk_rows=10, shard_chunks=2)
    one = write_activations(tmp_path / "one.zarr", batches, **args, write_threads=1)

    both_appending = threading.Barrier(2, timeout=10)
    started = threading.local()
    original_append = store_module._ShardFiles.append

    def append(self, rows):
        if not getattr(started, "done", False):
            started.done = True
            both_appending.wait()  # raises BrokenBarrierError if the other thread never comes
        return original_append(self, rows)

    monkeypatch.setattr(store_module._ShardFiles, "append", append)
    two = write_activations(tmp_path / "two.zarr", batches, **args, write_threads=2)
    assert_same_files(one, two)
    for bad in (0, 1.5):
        with pytest.raises(StoreError, match="write_threads must be a positive integer"):
            write_activations(tmp_path / "bad.zarr", batches, **args, write_threads=bad)
    assert not (tmp_path / "bad.zarr").exists() and not list(tmp_path.glob("*partial*"))


@pytest.mark.parametrize("name", ["block/conv", "", "..", "__meta", "labels", "sample_id"])
def test_a_layer_name_that_cannot_name_an_array_is_one_clear_error(tmp_path, name):
    batch = {name: np.zeros((4, 3), np.float32), "logits": np.zeros((4, 2), np.float32)}
    with pytest.raises(StoreError, match="cannot name an array of the activation store"):
        write_activations(tmp_path / "m.zarr", [batch], sample_id=np.arange(4), labels=np.zeros(4), attrs={})
    assert not (tmp_path / "m.zarr").exists()


def test_more_rows_than_sample_ids_is_an_error(tmp_path):
    rng = np.random.default_rng(5)
    _, batches = make_batches(rng, 20, [10, 10])
    with pytest.raises(StoreError, match="more rows than the 15 sample ids"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(15), labels=np.zeros(15), attrs={})
    assert not (tmp_path / "m.zarr").exists()


def test_layers_with_different_rows_in_one_batch_are_an_error(tmp_path):
    rng = np.random.default_rng(9)
    _, batches = make_batches(rng, 20, [10, 10])
    batches[1]["logits"] = batches[1]["logits"][:9]
    with pytest.raises(StoreError, match="same samples; this batch has conv: 10, logits: 9 rows"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(20), labels=np.zeros(20), attrs={})
    assert not (tmp_path / "m.zarr").exists()


def test_different_sample_ids_are_not_comparable(tmp_path):
    rng = np.random.default_rng(3)
    _, batches = make_batches(rng, 20, [10, 10])
    a = write_activations(tmp_path / "a.zarr", batches, sample_id=np.arange(20), labels=np.zeros(20), attrs={})
    b = write_activations(tmp_path / "b.zarr", batches, sample_id=np.arange(1, 21), labels=np.zeros(20), attrs={})
    check_comparable(ActivationStore(a), ActivationStore(a))
    with pytest.raises(StoreError, match="not comparable: their sample_id arrays differ.*same dataset split"):
        check_comparable(ActivationStore(a), ActivationStore(b))


def test_similarity_roundtrip_is_labelled(tmp_path):
    ds = xr.Dataset({"cka": (("layer_a", "layer_b"), np.eye(2))}, coords={"layer_a": ["x", "y"], "layer_b": ["p", "q"]}, attrs={"model_a": "a"})
    write_similarity(ds, tmp_path / "s.zarr")
    back = xr.open_zarr(tmp_path / "s.zarr")
    assert back["cka"].dims == ("layer_a", "layer_b")
    assert list(back["layer_b"].values) == ["p", "q"]
    assert read_similarity(tmp_path / "s.zarr").attrs["model_a"] == "a"


# --- reduced-precision stores (write_activations(dtype="float16")) ---------------------------


def test_float16_store_round_trip_reads_float32_and_keeps_logits_and_labels(tmp_path):
    rng = np.random.default_rng(11)
    n = 40
    data, batches = make_batches(rng, n, [8] * 5)
    labels = rng.integers(0, 5, n)
    path = write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(n), labels=labels, attrs={}, shard_chunks=2, dtype="float16")
    group = zarr.open_group(str(path), mode="r")
    assert group["conv"].dtype == np.float16 and group["logits"].dtype == np.float32 and group["labels"].dtype == np.int64
    store = ActivationStore(path)
    conv = store.read("conv")
    assert conv.dtype == np.float32
    np.testing.assert_array_equal(conv, data["conv"].astype(np.float16).astype(np.float32).reshape(n, -1))  # rounded once, to nearest
    np.testing.assert_array_equal(store.read("conv", np.array([3, 17, 39])), conv[[3, 17, 39]])
    np.testing.assert_array_equal(store.read("logits"), data["logits"])  # logits as written
    np.testing.assert_array_equal(store.labels, labels)
    np.testing.assert_array_equal(ActivationStore(path, cache_bytes=1 << 30).read("conv", np.array([0, 21])), conv[[0, 21]])
    assert (path / "conv" / "c.0.0.0.0").stat().st_size < 0.55 * 16 * 48 * 4  # a shard: 16 rows of 48 halves, not floats
    shard = path / "conv" / "c.1.0.0.0"  # the integrity record covers float16 shards too
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"c\.1\.0\.0\.0 \(layer 'conv', rows 16–31\) does not hold the bytes written"):
        ActivationStore(path).read("conv", np.array([20]))


def test_activation_beyond_float16_range_is_an_error_naming_the_layer(tmp_path):
    rng = np.random.default_rng(12)
    _, batches = make_batches(rng, 16, [8, 8])
    batches[1]["conv"][3, 0, 0, 0] = 70000.0  # finite in float32, inf in float16 (max 65504)
    with pytest.raises(StoreError, match=r"layer 'conv' has activations beyond float16's range \(±65504\) in row 11 .*extract\.dtype: float32"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(16), labels=np.zeros(16), attrs={}, dtype="float16")
    assert not (tmp_path / "m.zarr").exists()
    batches[1]["conv"][3, 0, 0, 0] = np.nan  # NaN stays the NaN error
    with pytest.raises(StoreError, match=r"layer 'conv' has NaN or Inf activations"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(16), labels=np.zeros(16), attrs={}, dtype="float16")
    _, batches = make_batches(rng, 16, [8, 8])
    batches[0]["logits"][0, 0] = 70000.0  # logits stay float32: no overflow
    write_activations(tmp_path / "ok.zarr", batches, sample_id=np.arange(16), labels=np.zeros(16), attrs={}, dtype="float16")
    assert ActivationStore(tmp_path / "ok.zarr").read("logits")[0, 0] == 70000.0


def test_unknown_store_dtype_is_an_error(tmp_path):
    _, batches = make_batches(np.random.default_rng(0), 8, [8])
    with pytest.raises(StoreError, match=r"dtype must be one of float32, float16, got 'bfloat16'"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(8), labels=np.zeros(8), attrs={}, dtype="bfloat16")
    assert not (tmp_path / "m.zarr").exists()


@pytest.mark.parametrize("cache_mb", [1024, 0])  # read once and kept / minibatch by minibatch
def test_cka_from_float16_stores_is_within_1e_3_of_the_float64_reference(tmp_path, cache_mb):
    """Minibatch CKA from float16 stores against the float64 reference on the unrounded
    activations: float16's rounding (relative 2⁻¹¹) moves it by well under 1e-3."""
    from reference import minibatch_cka

    from layersim.engine import compare_stores, minibatch_rows

    rng = np.random.default_rng(13)
    n = 64
    shared = rng.normal(size=(n, 40))
    layers = {
        "a": {"conv": np.maximum(shared[:, :32].reshape(n, 2, 4, 4) + 0.5 * rng.normal(size=(n, 2, 4, 4)), 0), "fc": np.maximum(shared @ rng.normal(size=(40, 30)), 0) * 50, "logits": rng.normal(size=(n, 5))},
        "b": {"conv": np.maximum(shared[:, 8:40].reshape(n, 2, 4, 4), 0), "fc": rng.normal(size=(n, 12)), "logits": rng.normal(size=(n, 5))},
    }
    paths = {}
    for name, data in layers.items():
        batches = [{k: v[i : i + 16].astype(np.float32) for k, v in data.items()} for i in range(0, n, 16)]
        paths[name] = write_activations(tmp_path / f"{name}.zarr", batches, sample_id=np.arange(n), labels=np.zeros(n), attrs={}, dtype="float16")
    result = compare_stores(paths, [("a", "b")], batch_size=16, passes=2, threads=1, progress=False, cache_mb=cache_mb)[("a", "b")]
    rows = minibatch_rows(n, 16, 2)
    expected = minibatch_cka([[v[r] for v in layers["a"].values()] for r in rows], [[v[r] for v in layers["b"].values()] for r in rows])
    error = np.abs(result["cka"].values - expected)
    assert error.max() < 1e-3, error
    assert error[:2, :2].max() > 1e-7  # the layers were rounded to float16 (logits were not)


def test_a_dropped_store_and_its_cache_are_freed_at_once(tmp_path):
    # no reference cycle through the store: its cached layers must not wait for the cycle
    # collector (repeated cached compare_stores calls grew RSS by a store's size each)
    import gc
    import weakref

    rows = np.random.default_rng(0).standard_normal((64, 8), dtype=np.float32)
    path = write_activations(tmp_path / "m.zarr", [{"x": rows, "logits": rows[:, :2]}], sample_id=np.arange(64), labels=np.zeros(64), attrs={})
    gc.disable()
    try:
        store = ActivationStore(path, cache_bytes=2**20)
        assert store.cached and np.array_equal(store.read("x"), rows)
        dropped = weakref.ref(store)
        del store
        assert dropped() is None
    finally:
        gc.enable()
