"""Tiny CIFAR archives in the official layouts, for tests (reusable by workflow tests).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     path, sha = make_cifar_archive(d, "cifar100", "binary", n_train=4, n_test=2)
...     path.name, len(sha)
('cifar-100-binary.tar.gz', 64)
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

IMAGE_BYTES = 3072
# One pixel every generated dataset sets: train row 0, green plane, row 5, column 7.
KNOWN_PIXEL = {"row": 0, "channel": 1, "y": 5, "x": 7, "value": 200}

_LAYOUT = {
    ("cifar10", "python"): ("cifar-10-python.tar.gz", "cifar-10-batches-py"),
    ("cifar10", "binary"): ("cifar-10-binary.tar.gz", "cifar-10-batches-bin"),
    ("cifar100", "python"): ("cifar-100-python.tar.gz", "cifar-100-python"),
    ("cifar100", "binary"): ("cifar-100-binary.tar.gz", "cifar-100-binary"),
}


def cifar_arrays(variant: str = "cifar10", n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict:
    """The raw content :func:`make_cifar_archive` writes for these arguments.

    Returns ``{"train": (data, fine, coarse), "test": (data, fine, coarse)}`` with ``data``
    uint8 ``(N, 3072)`` (R, G, B planes, each row-major 32×32) and int labels (``coarse`` is
    ``fine // 5`` for CIFAR-100, ``None`` for CIFAR-10).
    """
    rng = np.random.default_rng(seed)
    n_fine = 10 if variant == "cifar10" else 100
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, IMAGE_BYTES), dtype=np.uint8)
        fine = rng.integers(0, n_fine, size=n).astype(np.int64)
        if n:
            fine[: min(n, n_fine)] = np.arange(min(n, n_fine))  # every early row a known label
        coarse = fine // 5 if variant == "cifar100" else None
        out[split] = (data, fine, coarse)
    p = KNOWN_PIXEL
    out["train"][0][p["row"], p["channel"] * 1024 + p["y"] * 32 + p["x"]] = p["value"]
    return out


def _python_batch(variant: str, data, fine, coarse, label: bytes) -> bytes:
    batch = {
        b"batch_label": label,
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(data))],
    }
    if variant == "cifar10":
        batch[b"labels"] = [int(v) for v in fine]
    else:
        batch[b"fine_labels"] = [int(v) for v in fine]
        batch[b"coarse_labels"] = [int(v) for v in coarse]
    # Protocol 3: bytes stay bytes (protocol 2 from Python 3 would route them through
    # _codecs.encode, which genuine — Python 2 written — CIFAR pickles never name).
    return pickle.dumps(batch, protocol=3)


def _binary_batch(variant: str, data, fine, coarse) -> bytes:
    if variant == "cifar10":
        labels = fine[:, None]
    else:
        labels = np.stack([coarse, fine], axis=1)  # coarse byte first, then fine
    return np.concatenate([labels.astype(np.uint8), data], axis=1).tobytes()


def cifar_files(variant: str, fmt: str, arrays: dict) -> dict[str, bytes]:
    """``{file name: content}`` of the extracted directory for ``arrays``."""
    files: dict[str, bytes] = {}
    train, test = arrays["train"], arrays["test"]
    if variant == "cifar10":
        parts = np.array_split(np.arange(len(train[0])), 5)
        for i, idx in enumerate(parts, start=1):
            data, fine = train[0][idx], train[1][idx]
            if fmt == "python":
                files[f"data_batch_{i}"] = _python_batch(variant, data, fine, None, f"training batch {i} of 5".encode())
            else:
                files[f"data_batch_{i}.bin"] = _binary_batch(variant, data, fine, None)
        names = [f"class_{i}" for i in range(10)]
        if fmt == "python":
            files["test_batch"] = _python_batch(variant, *test, b"testing batch 1 of 1")
            files["batches.meta"] = pickle.dumps(
                {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10000, b"num_vis": 3072},
                protocol=3,
            )
        else:
            files["test_batch.bin"] = _binary_batch(variant, *test)
            files["batches.meta.txt"] = ("\n".join(names) + "\n").encode()
    else:
        fine_names = [f"fine_{i}" for i in range(100)]
        coarse_names = [f"coarse_{i}" for i in range(20)]
        if fmt == "python":
            files["train"] = _python_batch(variant, *train, b"training batch 1 of 1")
            files["test"] = _python_batch(variant, *test, b"testing batch 1 of 1")
            files["meta"] = pickle.dumps(
                {b"fine_label_names": [n.encode() for n in fine_names],
                 b"coarse_label_names": [n.encode() for n in coarse_names]},
                protocol=3,
            )
        else:
            files["train.bin"] = _binary_batch(variant, *train)
            files["test.bin"] = _binary_batch(variant, *test)
            files["fine_label_names.txt"] = ("\n".join(fine_names) + "\n").encode()
            files["coarse_label_names.txt"] = ("\n".join(coarse_names) + "\n").encode()
    return files


def write_tar_gz(path: str | Path, members: dict[str, bytes], *, directory: str | None = None) -> str:
    """Write a ``.tar.gz`` of regular files (under ``directory/`` if given); return its SHA-256."""
    path = Path(path)
    with tarfile.open(path, "w:gz") as tar:
        if directory:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(f"{directory}/{name}" if directory else name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_cifar_archive(
    directory: str | Path,
    variant: str = "cifar10",
    fmt: str = "python",
    n_train: int = 50,
    n_test: int = 20,
    seed: int = 0,
) -> tuple[Path, str]:
    """Write a tiny archive with the official name and layout into ``directory``.

    Returns the archive path and its SHA-256 (pass it as ``sha256=`` / ``dataset.sha256``,
    since the official MD5 cannot match). The content is :func:`cifar_arrays` of the same
    arguments.
    """
    archive_name, dir_name = _LAYOUT[(variant, fmt)]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = cifar_files(variant, fmt, cifar_arrays(variant, n_train, n_test, seed))
    path = directory / archive_name
    return path, write_tar_gz(path, files, directory=dir_name)
