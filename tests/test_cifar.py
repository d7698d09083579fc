"""CIFAR-10/100 loaders on generated tiny archives in the official layouts."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from cifar_fixtures import KNOWN_PIXEL, cifar_arrays, cifar_files, make_cifar_archive, write_tar_gz
from layersim.data import DatasetError
from layersim.data.cifar import RestrictedUnpickler, load_cifar, restricted_load

CASES = [(v, f) for v in ("cifar10", "cifar100") for f in ("python", "binary")]


@pytest.mark.parametrize("variant,fmt", CASES)
def test_loads_archive_with_labels_ids_and_pixel_layout(tmp_path, variant, fmt):
    path, sha = make_cifar_archive(tmp_path, variant, fmt, n_train=23, n_test=7, seed=3)
    ds = load_cifar(tmp_path, variant=variant, fmt=fmt, sha256=sha)
    raw = cifar_arrays(variant, 23, 7, seed=3)

    assert ds.name == variant and ds.num_classes == (10 if variant == "cifar10" else 100)
    for split, (data, fine, _) in ((ds.train, raw["train"]), (ds.eval, raw["test"])):
        assert split.images.shape == (len(fine), 3, 32, 32) and split.images.dtype == np.float32
        assert split.labels.dtype == np.int64 and split.sample_id.dtype == np.int64
        np.testing.assert_array_equal(split.labels, fine)
        np.testing.assert_array_equal(split.sample_id, np.arange(len(fine)))
        # byte c*1024 + y*32 + x of a row is channel c, row y, column x
        np.testing.assert_array_equal(split.images * 255, data.reshape(-1, 3, 32, 32).astype(np.float32))
    p = KNOWN_PIXEL
    assert ds.train.images[p["row"], p["channel"], p["y"], p["x"]] == np.float32(p["value"] / 255)
    assert 0.0 <= ds.train.images.min() and ds.train.images.max() <= 1.0


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_cifar100_coarse_labels(tmp_path, fmt):
    _, sha = make_cifar_archive(tmp_path, "cifar100", fmt, n_train=30, n_test=5)
    ds = load_cifar(tmp_path, variant="cifar100", fmt=fmt, label_mode="coarse", sha256=sha)
    raw = cifar_arrays("cifar100", 30, 5)
    assert ds.num_classes == 20 and ds.name == "cifar100-coarse"
    np.testing.assert_array_equal(ds.train.labels, raw["train"][2])
    np.testing.assert_array_equal(ds.eval.labels, raw["test"][2])


def test_auto_format_limits_and_reuse_of_extracted_dir(tmp_path):
    _, sha = make_cifar_archive(tmp_path, "cifar10", "binary", n_train=50, n_test=20)
    ds = load_cifar(tmp_path, variant="cifar10", max_train=12, max_eval=5, sha256=sha)
    raw = cifar_arrays("cifar10", 50, 20)
    assert len(ds.train) == 12 and len(ds.eval) == 5
    np.testing.assert_array_equal(ds.train.labels, raw["train"][1][:12])
    extracted = tmp_path / "cifar-10-batches-bin"
    assert extracted.is_dir() and not list(tmp_path.glob(".*partial"))
    # the extracted directory alone (archive removed) also loads, as does the directory path
    (tmp_path / "cifar-10-binary.tar.gz").unlink()
    again = load_cifar(extracted, variant="cifar10")
    np.testing.assert_array_equal(again.train.images, load_cifar(tmp_path, variant="cifar10").train.images)


def test_extracted_directory_without_archive(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for name, content in cifar_files("cifar100", "python", cifar_arrays("cifar100", 8, 4)).items():
        (root / name).write_bytes(content)
    ds = load_cifar(tmp_path, variant="cifar100")
    assert len(ds.train) == 8 and len(ds.eval) == 4


def test_official_archive_checked_against_published_md5(tmp_path):
    make_cifar_archive(tmp_path, "cifar10", "python")
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*cifar-10-python\.tar\.gz: md5 .*"
                       r"expected c58f30108f718f92721af3b95e74349a"):
        load_cifar(tmp_path, variant="cifar10")
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_wrong_sha256(tmp_path):
    make_cifar_archive(tmp_path, "cifar100", "binary")
    with pytest.raises(DatasetError, match=r"checksum mismatch .*sha256.*expected " + "0" * 64):
        load_cifar(tmp_path, variant="cifar100", sha256="0" * 64)


def test_missing_archive_says_where_and_what(tmp_path):
    with pytest.raises(DatasetError, match=rf"looked in {tmp_path} for cifar-10-python\.tar\.gz.*"
                       r"cifar-10-binary\.tar\.gz"):
        load_cifar(tmp_path, variant="cifar10")
    with pytest.raises(DatasetError, match=rf"looked for {tmp_path}/cifar-100-binary\.tar\.gz.*expected "
                       r"the file cifar-100-binary\.tar\.gz"):
        load_cifar(tmp_path, variant="cifar100", fmt="binary")


def test_truncated_archive_leaves_nothing_behind(tmp_path):
    path, _ = make_cifar_archive(tmp_path, "cifar10", "python", n_train=50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()  # checksum passes, the archive is short
    with pytest.raises(DatasetError, match=r"cannot read archive .*cifar-10-python\.tar\.gz: it is truncated"):
        load_cifar(tmp_path, variant="cifar10", sha256=sha)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def _archive_with(tmp_path, member: tarfile.TarInfo, content: bytes = b"") -> str:
    path = tmp_path / "cifar-10-binary.tar.gz"
    files = cifar_files("cifar10", "binary", cifar_arrays("cifar10", 5, 2))
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        if member.isfile():
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
        else:
            tar.addfile(member)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "name,kind,match",
    [
        ("../escaped.txt", tarfile.REGTYPE, r"member '\.\./escaped\.txt' has an absolute path or a '\.\.'"),
        ("cifar-10-batches-bin/../../escaped.txt", tarfile.REGTYPE, r"member '.*' has an absolute path or a '\.\.'"),
        ("/tmp/escaped.txt", tarfile.REGTYPE, r"member '/tmp/escaped\.txt' has an absolute path"),
        ("cifar-10-batches-bin/link", tarfile.SYMTYPE, r"member 'cifar-10-batches-bin/link' is a link"),
        ("cifar-10-batches-bin/hard", tarfile.LNKTYPE, r"member '.*hard' is a link"),
        ("cifar-10-batches-bin/dev", tarfile.CHRTYPE, r"member '.*dev' is a device, FIFO or special file"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, name, kind, match):
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "/etc/passwd"
    archive_dir = tmp_path / "data"
    archive_dir.mkdir()
    sha = _archive_with(archive_dir, member, b"escaped")
    with pytest.raises(DatasetError, match=r"unsafe archive .*cifar-10-binary\.tar\.gz: " + match):
        load_cifar(archive_dir, variant="cifar10", sha256=sha)
    assert sorted(p.name for p in archive_dir.iterdir()) == ["cifar-10-binary.tar.gz"]
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/escaped.txt")


class _Boom:
    """Unpickling this calls os.system — the restricted unpickler must not resolve it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({b"data": _Boom()}, protocol=3)
    with pytest.raises(DatasetError, match=r"refusing to load global '(posix|os|nt)\.system'"):
        restricted_load(payload, source="evil")
    assert not (tmp_path / "PWNED").exists()
    # and through the loader: a poisoned batch file inside an otherwise valid directory
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name, content in cifar_files("cifar10", "python", cifar_arrays("cifar10", 10, 2)).items():
        (root / name).write_bytes(content)
    (root / "data_batch_3").write_bytes(payload)
    with pytest.raises(DatasetError, match=r"data_batch_3: refusing to load global"):
        load_cifar(tmp_path, variant="cifar10")
    assert not (tmp_path / "PWNED").exists()


def test_restricted_unpickler_allows_only_numpy_array_globals():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    back = restricted_load(pickle.dumps({b"data": array, b"labels": [1, 2]}, protocol=3))
    np.testing.assert_array_equal(back[b"data"], array)
    for module, name in (("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen")):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            RestrictedUnpickler(io.BytesIO(b"")).find_class(module, name)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as the official files do."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def test_python2_style_pickle_loads():
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({b"batch_label": b"training batch 1 of 5", b"labels": [3, 4], b"data": data})
    # numpy 1.x (and the official files) name numpy.core.multiarray; numpy 2 numpy._core.multiarray
    raw = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    back = restricted_load(raw)
    assert back[b"labels"] == [3, 4] and back[b"batch_label"] == b"training batch 1 of 5"
    np.testing.assert_array_equal(back[b"data"], data)


def test_bad_binary_record_size_and_bad_options(tmp_path):
    root = tmp_path / "cifar-100-binary"
    root.mkdir()
    (root / "train.bin").write_bytes(b"\0" * 3074 * 2 + b"\0" * 10)
    (root / "test.bin").write_bytes(b"\0" * 3074)
    with pytest.raises(DatasetError, match=r"train\.bin has 6158 bytes, not a whole number of 3074-byte"):
        load_cifar(tmp_path, variant="cifar100")
    with pytest.raises(DatasetError, match="label_mode 'coarse' is not valid for cifar10"):
        load_cifar(tmp_path, variant="cifar10", label_mode="coarse")
    with pytest.raises(DatasetError, match="unknown CIFAR variant 'cifar1000'"):
        load_cifar(tmp_path, variant="cifar1000")
    with pytest.raises(DatasetError, match="max_train must be a positive integer"):
        load_cifar(tmp_path, variant="cifar100", max_train=0)


def test_load_dataset_dispatches_to_cifar(tmp_path):
    from layersim.data import load_dataset

    _, sha = make_cifar_archive(tmp_path, "cifar10", "python", n_train=10, n_test=4)
    ds = load_dataset({"name": "cifar10", "path": str(tmp_path), "sha256": sha, "max_train": 6})
    assert ds.name == "cifar10" and len(ds.train) == 6 and len(ds.eval) == 4


def test_image_size_resizes_bilinearly(tmp_path):
    from layersim.data import load_dataset

    _, sha = make_cifar_archive(tmp_path, "cifar10", "binary", n_train=5, n_test=3, seed=1)
    ds = load_dataset({"name": "cifar10", "path": str(tmp_path), "sha256": sha, "image_size": 16})
    # halving with align_corners=False samples between pixel pairs: the mean of each 2×2 block
    for split, (data, labels, _) in ((ds.train, cifar_arrays("cifar10", 5, 3, seed=1)["train"]),
                                     (ds.eval, cifar_arrays("cifar10", 5, 3, seed=1)["test"])):
        blocks = data.reshape(-1, 3, 16, 2, 16, 2).astype(np.float64) / 255
        assert split.images.shape == (len(labels), 3, 16, 16) and split.images.dtype == np.float32
        np.testing.assert_allclose(split.images, blocks.mean(axis=(3, 5)), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(split.labels, labels)


def test_archive_path_given_directly(tmp_path):
    path, sha = make_cifar_archive(tmp_path, "cifar100", "python", n_train=6, n_test=3)
    ds = load_cifar(path, variant="cifar100", sha256=sha)
    assert len(ds.train) == 6
    other = tmp_path / "renamed.tar.gz"
    write_tar_gz(other, {"x": b"1"})
    with pytest.raises(DatasetError, match=r"cannot tell the format of .*renamed\.tar\.gz"):
        load_cifar(other, variant="cifar100")


def _bomb_archive(tmp_path, member_bytes: int):
    """The official name and layout, one member of ``member_bytes`` zeros (compresses ~1000×)."""
    import gzip

    path = tmp_path / "cifar-10-python.tar.gz"
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = member_bytes
        tar.addfile(info, io.BytesIO(bytes(member_bytes)))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_member_past_the_size_limit_is_refused_before_anything_is_written(tmp_path):
    path, sha = _bomb_archive(tmp_path, 3 * 2**20)
    assert path.stat().st_size < 2**20 // 50  # a small archive inflating 3 MiB
    with pytest.raises(DatasetError, match=r"data_batch_1' would extract to 3 MiB, more than dataset.max_member_mb = 2"):
        load_cifar(tmp_path, variant="cifar10", sha256=sha, max_member_mb=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing extracted, no temporary left


def test_the_total_size_limit_is_checked_too(tmp_path):
    path, sha = _bomb_archive(tmp_path, 3 * 2**20)
    with pytest.raises(DatasetError, match=r"would extract to 3 MiB, more than dataset.max_extracted_mb = 1"):
        load_cifar(tmp_path, variant="cifar10", sha256=sha, max_extracted_mb=1)


def test_disk_full_while_extracting_blames_the_disk_not_the_archive(tmp_path, monkeypatch):
    import errno

    path, sha = make_cifar_archive(tmp_path, "cifar10", "python", n_train=5, n_test=3)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "makefile", full)  # writing any regular file fails
    with pytest.raises(DatasetError) as info:
        load_cifar(tmp_path, variant="cifar10", sha256=sha)
    message = str(info.value)
    assert "disk full while extracting" in message and "the archive is fine" in message and "corrupt" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the temporary directory is gone
