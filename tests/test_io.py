"""layersim.io: outputs appear whole or not at all; a full disk is one clear error. And the one
layer selection (layersim.layers)."""

import errno
import os

import numpy as np
import pytest

from layersim import io
from layersim.errors import LayersimError
from layersim.layers import select_layers


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or ".old" in p.name)


def test_file_is_written_whole(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    io.write_text(path, "a\n")
    io.write_text(path, "b\n")
    assert path.read_text() == "b\n" and _leftovers(path.parent) == []


def test_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")

    def write(tmp):
        tmp.write_text("half a tab")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        io.atomic_write(path, write)
    assert path.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_directory_output_replaces_the_old_one_whole(tmp_path):
    path = tmp_path / "result.zarr"

    def write_dir(names):
        def write(tmp):
            tmp.mkdir()
            for name in names:
                (tmp / name).write_text(name)
        return write

    io.atomic_write(path, write_dir(["a", "b"]))
    io.atomic_write(path, write_dir(["c"]))
    assert sorted(p.name for p in path.iterdir()) == ["c"] and _leftovers(tmp_path) == []


def test_directory_that_cannot_be_moved_in_keeps_the_old_output(tmp_path, monkeypatch):
    """The final rename fails (as on a read-only parent): the old output stays complete, not emptied."""
    path = tmp_path / "result.zarr"
    path.mkdir()
    (path / "data").write_text("complete")
    real_replace = os.replace

    def replace(src, dst):
        if str(src).endswith(".partial.zarr"):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)

    def write(tmp):
        tmp.mkdir()
        (tmp / "data").write_text("new")

    with pytest.raises(PermissionError):
        io.atomic_write(path, write)
    assert (path / "data").read_text() == "complete" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_is_one_clear_error_and_leaves_nothing(tmp_path, code):
    path = tmp_path / "table.csv"

    def write(tmp):
        tmp.write_text("the first rows")
        raise OSError(code, os.strerror(code), str(tmp))

    with pytest.raises(LayersimError, match=r"disk full while writing .*table\.csv: free space and rerun"):
        io.atomic_write(path, write)
    assert not path.exists() and _leftovers(tmp_path) == []


def test_disk_full_in_a_table_writer(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.Path, "write_text", full)
    with pytest.raises(LayersimError, match="disk full while writing"):
        io.write_csv([{"a": 1}], tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_csv_round_trip_and_formats(tmp_path):
    rows = [{"name": "x", "n": 3, "value": 0.1234567, "flag": True}, {"name": "y", "n": 4, "value": float("nan"), "flag": False}]
    path = tmp_path / "t.csv"
    io.write_csv(rows, path, ["k: v"])
    assert path.read_bytes() == b"# k: v\nname,n,value,flag\nx,3,0.123457,True\ny,4,nan,False\n"
    back = io.read_csv(path)
    assert back[0] == {"name": "x", "n": 3, "value": 0.123457, "flag": "True"} and np.isnan(back[1]["value"])
    assert io.read_comments(path) == {"k": "v"}
    io.write_csv(rows[:1], path, float_format="", lineterminator="\r\n")
    assert path.read_bytes() == b"name,n,value,flag\r\nx,3,0.1234567,True\r\n"


def test_npz_writer_keeps_its_name(tmp_path):
    """np.savez appends .npz unless the name ends in it: the temporary name keeps the suffix."""
    path = tmp_path / "arrays.npz"
    io.atomic_write(path, lambda tmp: np.savez_compressed(tmp, a=np.arange(3)))
    assert np.load(path)["a"].tolist() == [0, 1, 2] and sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]


def test_select_layers():
    layers = ["conv", "b1.relu", "b2.relu", "pool", "logits"]
    assert select_layers(layers, r"\.relu$|^pool$") == ["b1.relu", "b2.relu", "pool"]
    assert select_layers(layers, "o") == ["conv", "pool"]
    assert select_layers(layers, "o", include_logits=True) == ["conv", "pool", "logits"]
    with pytest.raises(LayersimError, match=r"no layer matches the block pattern 'fc'; layers: conv, b1.relu"):
        select_layers(layers, "fc", what="block pattern")
    with pytest.raises(LayersimError, match="not a regular expression"):
        select_layers(layers, "(")
