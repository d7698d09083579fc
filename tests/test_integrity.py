"""Fault battery: damaged stores and results, non-finite inputs, a full disk. Each is one clear
error (what, where, what to do), never a number."""

import errno
import json
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from layersim import store as store_module
from layersim.engine import compare_stores
from layersim.store import ActivationStore, StoreError, read_similarity, write_activations, write_similarity

N, SHARD_ROWS = 64, 16  # 4 shards a layer (chunks of 8 rows, 2 chunks a shard)
REMEDY = "delete it and rerun the extract step that wrote it (`snakemake --force"


def make_store(path, seed=0, n=N):
    rng = np.random.default_rng(seed)
    data = {"conv": rng.normal(size=(n, 8, 8, 8)).astype(np.float32), "fc": rng.normal(size=(n, 10)).astype(np.float32), "logits": rng.normal(size=(n, 4)).astype(np.float32)}
    batches = [{k: v[s : s + 8] for k, v in data.items()} for s in range(0, n, 8)]
    write_activations(path, batches, sample_id=np.arange(n), labels=np.arange(n) % 4, attrs={"model": path.stem}, chunk_rows=8, shard_chunks=2)
    return data


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "m-s0-e1.zarr"
    return path, make_store(path)


def read_everything(path, cache_bytes=0):
    """What a similarity job reads: the store opened and every layer read (minibatch rows)."""
    opened = ActivationStore(path, cache_bytes=cache_bytes)
    rows = np.sort(np.random.default_rng(0).permutation(N)[:32])
    return {layer: opened.read(layer, rows) for layer in opened.layers}


def expect_damage(path, *fragments, cache_bytes=0):
    with pytest.raises(StoreError) as info:
        read_everything(path, cache_bytes)
    message = str(info.value)
    assert message.startswith(f"activation store {path} is damaged: ")
    for fragment in (*fragments, REMEDY):
        assert fragment in message, message
    return message


# --- damaged activation stores ------------------------------------------------------------------


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30], ids=["out-of-core", "cached"])
def test_negated_floats_in_one_shard(store, cache_bytes):
    path, _ = store
    shard = path / "conv" / "c.1.0.0.0"
    raw = np.fromfile(shard, dtype="<f4")
    raw[100:2100] *= -1  # 2,000 floats of rows 16–31
    raw.tofile(shard)
    expect_damage(path, "conv/c.1.0.0.0 (layer 'conv', rows 16–31) does not hold the bytes written (CRC32C", cache_bytes=cache_bytes)


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30], ids=["out-of-core", "cached"])
def test_one_shard_overwritten_by_its_sibling(store, cache_bytes):
    path, _ = store
    (path / "conv" / "c.2.0.0.0").write_bytes((path / "conv" / "c.1.0.0.0").read_bytes())
    expect_damage(path, "conv/c.2.0.0.0 (layer 'conv', rows 32–47) does not hold the bytes written", cache_bytes=cache_bytes)


def test_two_shards_swapped(store):
    path, _ = store
    a, b = path / "fc" / "c.0.0", path / "fc" / "c.3.0"
    first, last = a.read_bytes(), b.read_bytes()
    a.write_bytes(last)
    b.write_bytes(first)
    expect_damage(path, "(layer 'fc', rows", "does not hold the bytes written")


def test_one_flipped_bit_in_a_shards_padding_or_index(store):
    path, _ = store
    shard = path / "conv" / "c.3.0.0.0"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 1  # the shard index (its own checksum makes zarr refuse it; ours names it)
    shard.write_bytes(bytes(raw))
    expect_damage(path, "conv/c.3.0.0.0 (layer 'conv', rows 48–63) does not hold the bytes written")


def test_zero_length_shard(store):
    path, _ = store
    size = (path / "conv" / "c.2.0.0.0").stat().st_size
    (path / "conv" / "c.2.0.0.0").write_bytes(b"")
    expect_damage(path, f"conv/c.2.0.0.0 (layer 'conv', rows 32–47) has 0 bytes where {size:,} were written")


def test_truncated_shard(store):
    path, _ = store
    shard = path / "logits" / "c.0.0"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:100])
    expect_damage(path, f"logits/c.0.0 (layer 'logits', rows 0–15) has 100 bytes where {size:,} were written")


def test_deleted_shard(store):
    path, _ = store
    (path / "conv" / "c.3.0.0.0").unlink()
    expect_damage(path, "conv/c.3.0.0.0 (layer 'conv', rows 48–63) is missing")


def edit_json(file, change):
    doc = json.loads(file.read_text())
    change(doc)
    file.write_text(json.dumps(doc, indent=2))


def test_layer_metadata_says_big_endian(store):
    path, _ = store
    edit_json(path / "conv" / "zarr.json", lambda d: d["codecs"][0]["configuration"]["codecs"][0]["configuration"].update(endian="big"))
    expect_damage(path, "conv/zarr.json (layer 'conv''s metadata)")


def test_layer_metadata_with_another_length(store):
    path, _ = store
    edit_json(path / "fc" / "zarr.json", lambda d: d["shape"].__setitem__(0, 80))
    expect_damage(path, "fc/zarr.json (layer 'fc''s metadata)")


@pytest.mark.parametrize("content", [b"", b"{", b"not json at all"], ids=["empty", "cut", "invalid"])
def test_layer_metadata_that_is_not_json(store, content):
    path, _ = store
    (path / "conv" / "zarr.json").write_bytes(content)
    expect_damage(path, "conv/zarr.json (layer 'conv''s metadata) has")


def test_store_attributes_edited(store):
    path, _ = store
    edit_json(path / "zarr.json", lambda d: d["attributes"].update(layers=["fc", "logits"]))
    expect_damage(path, "zarr.json (the store's attributes) has")


def test_deleted_sample_id_chunk(store):
    path, _ = store
    (path / "sample_id" / "c" / "0").unlink()
    expect_damage(path, "sample_id/c/0 (the sample ids) is missing")


def test_edited_labels(store):
    path, _ = store
    labels = path / "labels" / "c" / "0"
    raw = np.frombuffer(labels.read_bytes(), "<i8").copy()
    raw[:5] = 3
    labels.write_bytes(raw.tobytes())
    expect_damage(path, "labels/c/0 (the labels) does not hold the bytes written")


def test_deleted_integrity_record(store):
    path, _ = store
    (path / "integrity" / "zarr.json").unlink()
    with pytest.raises(StoreError, match="has no integrity record .*Delete it and rerun the extract step"):
        ActivationStore(path)


def test_unreadable_integrity_record(store):
    path, _ = store
    (path / "integrity" / "zarr.json").write_text('{"zarr_format": 3')
    expect_damage(path, "integrity/zarr.json (the integrity record) cannot be read as an integrity record")


def test_damage_after_the_store_was_opened_is_caught_at_the_read(store):
    """A file replaced after its first, checked read is checked again when the direct read
    cannot use it (here: emptied)."""
    path, data = store
    opened = ActivationStore(path)
    np.testing.assert_array_equal(opened.read("fc"), data["fc"])
    (path / "fc" / "c.1.0").write_bytes(b"")
    with pytest.raises(StoreError, match=r"fc/c\.1\.0 \(layer 'fc', rows 16–31\) has 0 bytes where"):
        opened.read("fc", np.array([3, 17]))


def test_compare_stores_refuses_a_damaged_store_before_any_number(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    make_store(a, seed=0)
    make_store(b, seed=1)
    raw = np.fromfile(b / "conv" / "c.0.0.0.0", dtype="<f4")
    raw[:2000] *= -1
    raw.tofile(b / "conv" / "c.0.0.0.0")
    for cache_mb in (0, 64):
        with pytest.raises(StoreError, match=rf"activation store {b} is damaged: conv/c\.0\.0\.0\.0 \(layer 'conv', rows 0–15\)"):
            compare_stores({"a": str(a), "b": str(b)}, [("a", "b")], batch_size=16, passes=1, threads=1, cache_mb=cache_mb, progress=False)


def grams_job(store, out, tmp_path):
    return SimpleNamespace(
        input=SimpleNamespace(store=str(store)),
        output=SimpleNamespace(grams=str(out)),
        params=SimpleNamespace(batch_size=16, passes=1, dtype="float32", layer_block=4, cache_mb=64, scheduler_address=None, gram_kernel="syrk"),
        wildcards=SimpleNamespace(instance="a"),
        log=[str(tmp_path / "grams.log")],
        threads=1,
    )


def test_the_grams_job_exits_with_one_line_for_a_damaged_store(tmp_path, capsys):
    from layersim.jobs import core as rules

    a = tmp_path / "a.zarr"
    make_store(a)
    (a / "conv" / "c.1.0.0.0").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        rules.grams(grams_job(a, tmp_path / "grams.zarr", tmp_path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "is damaged: conv/c.1.0.0.0 (layer 'conv', rows 16–31) has 0 bytes" in err and "snakemake --force" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "grams.zarr").exists() and not list(tmp_path.glob("grams.partial*"))


@pytest.fixture
def gram_store(tmp_path):
    from layersim.jobs import core as rules

    make_store(tmp_path / "a.zarr")
    rules.grams(grams_job(tmp_path / "a.zarr", tmp_path / "grams" / "a.zarr", tmp_path))
    return tmp_path / "grams" / "a.zarr"


def similarity_job(grams, tmp_path):
    return SimpleNamespace(
        input=SimpleNamespace(a=str(grams), b=str(grams)),
        output=SimpleNamespace(result=str(tmp_path / "out.zarr")),
        wildcards=SimpleNamespace(a="a", b="a"),
        log=[str(tmp_path / "similarity.log")],
        threads=1,
    )


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda g: (g / "grams" / "c.1.0.0").write_bytes((g / "grams" / "c.0.0.0").read_bytes()), r"grams/c\.1\.0\.0 \(the Grams of minibatch 2\) does not hold the bytes written"),
        (lambda g: (g / "grams" / "c.0.0.0").unlink(), r"grams/c\.0\.0\.0 \(the Grams of minibatch 1\) is missing"),
        (lambda g: (g / "self_hsic" / "c" / "0" / "0").write_bytes(b"\0" * 8), r"self_hsic/c/0/0 has 8 bytes where"),
        (lambda g: (g / "integrity" / "zarr.json").unlink(), r"is incomplete or has no integrity record"),
    ],
)
def test_the_similarity_job_exits_with_one_line_for_a_damaged_gram_store(gram_store, tmp_path, capsys, damage, message):
    from layersim.jobs import core as rules

    rules.similarity(similarity_job(gram_store, tmp_path))  # intact: a result
    assert read_similarity(tmp_path / "out.zarr")["cka"].shape == (3, 3)
    damage(gram_store)
    capsys.readouterr()
    (tmp_path / "again").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        rules.similarity(similarity_job(gram_store, tmp_path / "again"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert f"Gram store {gram_store}" in err and err.count("\n") == 1
    assert not (tmp_path / "again" / "out.zarr").exists()


def test_an_intact_store_reads_back_exactly_in_every_way(store):
    path, data = store
    for cache_bytes in (0, 1 << 30):
        opened = ActivationStore(path, cache_bytes=cache_bytes)
        for rows in (np.array([0, 15, 16, 40]), np.arange(N), slice(3, 50)):
            for layer in opened.layers:
                np.testing.assert_array_equal(opened.read(layer, rows), data[layer][rows].reshape(len(data[layer][rows]), -1))
    np.testing.assert_array_equal(ActivationStore(path).read("fc", slice(0, N, 3)), data["fc"][::3])


def test_the_integrity_record_lists_every_file_with_its_crc32c(store):
    import google_crc32c

    path, _ = store
    record = json.loads((path / "integrity" / "zarr.json").read_text())
    files = record["attributes"]["layersim_integrity"]["files"]
    on_disk = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.parent.name != "integrity")
    assert sorted(files) == on_disk
    for rel, (size, crc) in files.items():
        raw = (path / rel).read_bytes()
        assert (size, crc) == (len(raw), google_crc32c.value(raw)), rel


# --- similarity results --------------------------------------------------------------------------


@pytest.fixture
def result(tmp_path):
    ds = xr.Dataset({"cka": (("layer_a", "layer_b"), np.arange(6.0).reshape(2, 3) / 6)}, coords={"layer_a": ["x", "y"], "layer_b": ["p", "q", "r"]}, attrs={"model_a": "a"})
    return write_similarity(ds, tmp_path / "a__b.zarr")


def test_similarity_result_with_changed_bytes(result):
    chunk = next(p for p in (result / "cka").rglob("*") if p.is_file() and p.name != "zarr.json")
    raw = np.frombuffer(chunk.read_bytes(), np.uint8).copy()
    raw[-8:] ^= 0xFF
    chunk.write_bytes(raw.tobytes())
    with pytest.raises(StoreError, match=rf"similarity result {result} is damaged: cka/.* \(variable 'cka'\) does not hold the bytes written.*rerun the similarity step"):
        read_similarity(result)


def test_similarity_result_with_edited_metadata_or_a_deleted_file(result):
    edit_json(result / "zarr.json", lambda d: d["attributes"].update(model_a="b"))
    with pytest.raises(StoreError, match=r"is damaged: zarr\.json does not hold the bytes written"):
        read_similarity(result)


def test_similarity_result_without_integrity_record(result):
    (result / "integrity" / "zarr.json").unlink()
    with pytest.raises(StoreError, match="has no integrity record.*rerun the similarity step"):
        read_similarity(result)


def test_an_intact_similarity_result_reads_back(result):
    back = read_similarity(result)
    np.testing.assert_array_equal(back["cka"].values, np.arange(6.0).reshape(2, 3) / 6)
    assert list(back["layer_b"].values) == ["p", "q", "r"]


# --- a full disk ---------------------------------------------------------------------------------


def test_disk_full_while_appending_a_shard_is_one_error_and_no_store(tmp_path, monkeypatch):
    original = store_module._ShardFiles._write

    def full(self, data):
        if self.name == "conv" and self._shard == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(store_module._ShardFiles, "_write", full)
    path = tmp_path / "m.zarr"
    with pytest.raises(StoreError, match=rf"disk full while writing the activation store {path}: free space and rerun \(nothing of it was kept; No space left on device\)"):
        make_store(path)
    assert not path.exists() and not list(tmp_path.glob("*partial*"))


def test_disk_full_in_a_zarr_write_or_the_integrity_record_is_one_error_and_no_store(tmp_path, monkeypatch):
    original = store_module._record_integrity

    def full(root, known):
        original(root, known)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_record_integrity", full)
    path = tmp_path / "m.zarr"
    with pytest.raises(StoreError, match="disk full while writing the activation store"):
        make_store(path)
    assert not path.exists() and not list(tmp_path.glob("*partial*"))
    ds = xr.Dataset({"cka": (("layer_a", "layer_b"), np.eye(2))}, coords={"layer_a": ["x", "y"], "layer_b": ["p", "q"]})
    with pytest.raises(StoreError, match="disk full while writing the similarity result"):
        write_similarity(ds, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists() and not list(tmp_path.glob("*partial*"))


def test_disk_full_replacing_a_store_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.zarr"
    data = make_store(path)
    monkeypatch.setattr(store_module._ShardFiles, "_write", lambda self, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StoreError, match="disk full"):
        make_store(path, seed=5)
    monkeypatch.undo()
    np.testing.assert_array_equal(ActivationStore(path).read("fc"), data["fc"])


# --- stores open in xarray -----------------------------------------------------------------------


def test_an_activation_store_opens_in_xarray_with_every_layer(tmp_path):
    path = tmp_path / "m.zarr"
    rng = np.random.default_rng(3)
    data = {"conv": rng.normal(size=(24, 3, 4, 4)).astype(np.float32), "conv2": rng.normal(size=(24, 5, 2, 2)).astype(np.float32), "fc": rng.normal(size=(24, 7)).astype(np.float32), "logits": rng.normal(size=(24, 3)).astype(np.float32)}
    write_activations(path, [{k: v[s : s + 8] for k, v in data.items()} for s in (0, 8, 16)], sample_id=np.arange(100, 124), labels=np.arange(24) % 3, attrs={"model": "m"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either (about the integrity record, say)
        ds = xr.open_zarr(path, consolidated=False)
    assert set(ds.data_vars) == {"conv", "conv2", "fc", "logits", "sample_id", "labels"}
    assert ds["conv"].dims == ("sample", "conv.channel", "conv.height", "conv.width")
    assert ds["conv2"].dims == ("sample", "conv2.channel", "conv2.height", "conv2.width")
    assert ds["fc"].dims == ("sample", "fc.feature") and ds["logits"].dims == ("sample", "logits.class")
    for layer, values in data.items():
        np.testing.assert_array_equal(ds[layer].values, values)
    np.testing.assert_array_equal(ds["sample_id"].values, np.arange(100, 124))
    assert ds.attrs["layers"] == ["conv", "conv2", "fc", "logits"]
    with pytest.warns(RuntimeWarning, match="consolidated"):  # plain open_zarr works too
        np.testing.assert_array_equal(xr.open_zarr(path)["fc"].values, data["fc"])


def test_keras_dimension_names_are_kept_per_layer(tmp_path):
    path = tmp_path / "k.zarr"
    batch = {"conv": np.ones((4, 2, 2, 3), np.float32) * np.arange(4)[:, None, None, None], "logits": np.eye(4, 2, dtype=np.float32)}
    write_activations(path, [batch], sample_id=np.arange(4), labels=np.zeros(4), attrs={}, dimension_names={"conv": ("height", "width", "channel"), "logits": ("class",)})
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["conv"].dims == ("sample", "conv.height", "conv.width", "conv.channel")


def test_integrity_is_a_reserved_layer_name(tmp_path):
    batch = {"integrity": np.zeros((4, 3), np.float32), "logits": np.zeros((4, 2), np.float32)}
    with pytest.raises(StoreError, match="cannot name an array of the activation store"):
        write_activations(tmp_path / "m.zarr", [batch], sample_id=np.arange(4), labels=np.zeros(4), attrs={})


# --- non-finite activations at extraction ---------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_non_finite_activations_are_refused_at_extraction(tmp_path, bad, dtype):
    rng = np.random.default_rng(0)
    batches = [{"conv": rng.normal(size=(8, 2, 3, 3)).astype(np.float32), "logits": rng.normal(size=(8, 3)).astype(np.float32)} for _ in range(4)]
    batches[2]["conv"][5, 1, 2, 0] = bad  # one value, in row 21
    path = tmp_path / "m.zarr"
    with pytest.raises(StoreError, match=rf"layer 'conv' has NaN or Inf activations in 1 of rows 16–23 \(the first: row 21\) while writing {path}.*No store was written"):
        write_activations(path, batches, sample_id=np.arange(32), labels=np.zeros(32), attrs={}, dtype=dtype)
    assert not path.exists() and not list(tmp_path.glob("*partial*"))


def test_huge_finite_activations_are_stored(tmp_path):
    """Finite values whose sum overflows float32 are not mistaken for Inf."""
    batch = {"big": np.full((4, 8), 3e38, np.float32), "logits": np.eye(4, 2, dtype=np.float32)}
    path = write_activations(tmp_path / "m.zarr", [batch], sample_id=np.arange(4), labels=np.zeros(4), attrs={})
    np.testing.assert_array_equal(ActivationStore(path).read("big"), batch["big"])


# --- non-finite inputs to the CKA engine ---------------------------------------------------------

from layersim.engine import BatchGrams, EstimatorError, MinibatchCKA, NonFiniteInputError, UndefinedLayerWarning  # noqa: E402


def reference_cka(xs, ys):
    """Minibatch CKA in float64 from the unbiased HSIC written out (Song et al. 2012),
    independent of the engine: sums over batches, then normalised."""

    def hsic(k, l):
        n = len(k)
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        return (np.trace(k @ l) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 * (k.sum(0) @ l.sum(0)) / (n - 2)) / (n * (n - 3))

    grams = lambda batch: [(x.reshape(len(x), -1).astype(np.float64)) @ (x.reshape(len(x), -1).astype(np.float64)).T for x in batch]
    ab = aa = bb = 0
    for bx, by in zip(xs, ys):
        ka, kb = grams(bx), grams(by)
        ab = ab + np.array([[hsic(k, l) for l in kb] for k in ka])
        aa = aa + np.array([hsic(k, k) for k in ka])
        bb = bb + np.array([hsic(l, l) for l in kb])
    return ab / np.sqrt(np.outer(aa, bb))


def layers(rng, n=16):
    return [rng.normal(size=(n, 3, 2, 2)).astype(np.float32), rng.normal(size=(n, 5)).astype(np.float32)]


def test_one_nan_pixel_is_an_error_naming_model_layer_and_batch():
    rng = np.random.default_rng(0)
    a, b = layers(rng), layers(rng)
    a[0][3, 1, 0, 1] = np.nan
    acc = MinibatchCKA(layer_names_a=["conv", "fc"], layer_names_b=["conv", "fc"])
    with pytest.raises(NonFiniteInputError, match=r"^model a, minibatch 1: layer 'conv': 1 NaN and 0 infinite activations \(of 192\)\. CKA needs finite"):
        acc.update(a, b)
    assert isinstance(NonFiniteInputError("x"), EstimatorError)
    assert acc.n_batches == 0 and acc.hsic_ab is None  # nothing was added


def test_inf_in_model_b_is_an_error():
    rng = np.random.default_rng(1)
    a, b = layers(rng), layers(rng)
    b[1][0, 0] = -np.inf
    with pytest.raises(NonFiniteInputError, match=r"^model b, minibatch 1: layer #1: 0 NaN and 1 infinite activations"):
        MinibatchCKA().update(a, b)
    with pytest.raises(NonFiniteInputError, match=r"^model b: layer #1: 0 NaN and 1 infinite"):
        BatchGrams.from_models([a, b])


def test_nan_in_one_batch_of_many_is_an_error_naming_that_batch():
    rng = np.random.default_rng(2)
    acc = MinibatchCKA(layer_names_a=["conv", "fc"], layer_names_b=["c", "f"])
    for k in range(6):
        a, b = layers(rng), layers(rng)
        if k == 4:
            b[0][7] = np.nan
        if k < 4:
            acc.update(a, b)
        else:
            with pytest.raises(NonFiniteInputError, match=r"^model b, minibatch 5: layer 'c': 12 NaN and 0 infinite"):
                acc.update(a, b)
            break
    assert acc.n_batches == 4


def test_nan_through_the_torch_backend_is_an_error():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a = [torch.from_numpy(x) for x in layers(rng)]
    a[1][2, 2] = float("nan")
    with pytest.raises(NonFiniteInputError, match=r"^model a, minibatch 1: layer 'fc': 1 NaN"):
        MinibatchCKA(layer_names_a=["conv", "fc"], backend="torch").update(a)


def test_large_int64_activations_overflow_float32_as_an_error_and_are_exact_in_float64():
    rng = np.random.default_rng(4)
    a = [rng.integers(-(2**62), 2**62, size=(16, 10)) for _ in range(2)]
    b = [rng.integers(-(2**62), 2**62, size=(16, 6))]
    with pytest.raises(NonFiniteInputError, match=r"overflows float32.*use dtype float64"):
        acc = MinibatchCKA()
        acc.update(a, b)
        acc.compute()
    acc = MinibatchCKA(np.float64)
    acc.update(a, b)
    want = reference_cka([[x / 2.0**62 for x in a]], [[x / 2.0**62 for x in b]])  # CKA is scale invariant
    np.testing.assert_allclose(acc.compute(), want, rtol=1e-9)


def test_finite_activations_whose_gram_overflows_float32_are_an_error():
    x = np.full((8, 4), 2e19, np.float32)
    x[::2] *= -1
    with pytest.raises(NonFiniteInputError, match=r"layer #0: finite activations \(largest \|value\| 2e\+19\) whose Gram overflows float32"):
        BatchGrams.from_layers([x])


def test_a_constant_layer_stays_undefined_not_an_error():
    rng = np.random.default_rng(5)
    a = layers(rng) + [np.ones((16, 4), np.float32)]
    acc = MinibatchCKA(layer_names_a=["conv", "fc", "dead"], layer_names_b=["conv", "fc", "dead"])
    acc.update(a)
    with pytest.warns(UndefinedLayerWarning, match="dead"):
        cka = acc.compute()
    assert np.isnan(cka[2]).all() and np.isfinite(cka[:2, :2]).all()


def test_compare_models_refuses_one_nan_pixel():
    torch = pytest.importorskip("torch")
    from layersim.api import compare_models

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    images = torch.randn(32, 1, 8, 8)
    images[9, 0, 4, 4] = float("nan")
    with pytest.raises(NonFiniteInputError, match=r"^model a, minibatch [12]: layer '0': 36 NaN and 0 infinite activations \(of 2304\); layer '1': 36 NaN.*layer '3': 3 NaN"):
        compare_models(model, model, images, batch_size=16, passes=1, progress=False)


@pytest.mark.parametrize("cache_mb", [0, 64], ids=["out-of-core", "cached"])
def test_compare_stores_refuses_a_store_holding_nan(tmp_path, monkeypatch, cache_mb):
    """A store with NaN (written before activations were checked, say) is refused by name."""
    monkeypatch.setattr(store_module, "_check_finite", lambda *args: None)
    rng = np.random.default_rng(6)
    data = {"conv": rng.normal(size=(32, 2, 3, 3)).astype(np.float32), "logits": rng.normal(size=(32, 3)).astype(np.float32)}
    data["conv"][20, 1] = np.nan
    path = write_activations(tmp_path / "a.zarr", [data], sample_id=np.arange(32), labels=np.zeros(32), attrs={})
    with pytest.raises(NonFiniteInputError, match=rf"^activation store {path}, minibatch \d of 4 \(batch_size 16, pass \d\): layer 'conv': 9 NaN"):
        compare_stores({"a": str(path)}, [("a", "a")], batch_size=16, passes=2, threads=1, cache_mb=cache_mb, progress=False)


def test_the_ding_job_names_its_config_key_when_a_layer_pattern_matches_nothing(tmp_path, capsys):
    from layersim.jobs import ding as ding_jobs

    stores = [tmp_path / "m-s0-e1.zarr", tmp_path / "m-s1-e1.zarr"]
    for seed, path in enumerate(stores):
        make_store(path, seed=seed)
    outputs = {name: str(tmp_path / f"{name}.out") for name in ("depth", "pc_deletion", "summary", "depth_figure", "pc_figure")}
    smk = SimpleNamespace(
        input=SimpleNamespace(stores=[str(p) for p in stores]),
        output=SimpleNamespace(**outputs),
        params=SimpleNamespace(seeds=[0, 1], layers="^block9$", pc_layer="fc", pc_deletions=[1], metrics=["linear_cka"], max_samples=N),
        wildcards=SimpleNamespace(),
        log=[str(tmp_path / "ding.log")],
        threads=1,
    )
    with pytest.raises(SystemExit) as exit_info:
        ding_jobs.ding_benchmark(smk)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "no layer matches the papers.ding.layers pattern '^block9$'; layers: conv, fc, logits" in err
    assert err.count("\n") == 1
    assert not list(tmp_path.glob("*.out"))
