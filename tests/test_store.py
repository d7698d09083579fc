"""The activation store layout, shard-aligned writes, and comparability checks."""

import numpy as np
import pytest
import xarray as xr
import zarr

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
    assert conv.metadata.dimension_names == ("sample", "channel", "height", "width")
    assert group["logits"].metadata.dimension_names == ("sample", "class")
    assert conv.chunks == (8, 3, 4, 4) and conv.shards == (16, 3, 4, 4)
    np.testing.assert_array_equal(conv[:], data["conv"])
    rows = np.array([0, 5, 17, 18, 40, 69])
    np.testing.assert_array_equal(store.read("conv", rows), data["conv"][rows].reshape(len(rows), -1))
    assert not (tmp_path / "m.zarr.partial").exists()


def test_writes_are_whole_shards(tmp_path, monkeypatch):
    """Every write covers whole shards (or the final rows), never part of a shard."""
    rng = np.random.default_rng(1)
    _, batches = make_batches(rng, 50, [7] * 7 + [1])
    regions = []
    original = zarr.Array.__setitem__

    def spy(self, key, value):
        regions.append((key.start, key.stop))
        return original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", spy)
    write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(50), labels=np.zeros(50), attrs={}, chunk_rows=5, shard_chunks=2)
    starts = sorted({r for r in regions})
    assert starts == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]


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


def test_failed_shard_write_is_raised_and_leaves_no_store(tmp_path, monkeypatch):
    """A write that fails in the background writer stops the extraction with its error."""
    rng = np.random.default_rng(4)
    _, batches = make_batches(rng, 40, [5] * 8)
    original = zarr.Array.__setitem__

    def full_disk(self, key, value):
        if key.start >= 20:  # the second shard
            raise OSError("No space left on device")
        return original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(40), labels=np.zeros(40), attrs={}, chunk_rows=5, shard_chunks=4)
    assert not (tmp_path / "m.zarr").exists()


def test_more_rows_than_sample_ids_is_an_error(tmp_path):
    rng = np.random.default_rng(5)
    _, batches = make_batches(rng, 20, [10, 10])
    with pytest.raises(StoreError, match="more rows than the 15 sample ids"):
        write_activations(tmp_path / "m.zarr", batches, sample_id=np.arange(15), labels=np.zeros(15), attrs={})
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
