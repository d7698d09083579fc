"""CIFAR-10 and CIFAR-100 from the standard archives a user places on disk (no download).

Checksums, safe extraction, restricted unpickling and the image layout: see docs/keras.md, "CIFAR data".
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from layersim.data.dataset import Dataset, DatasetError, Split, resize_images

log = logging.getLogger(__name__)

IMAGE_BYTES = 3 * 32 * 32
_MARKER = ".layersim-extracted.json"


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant/format lives and what it contains."""

    variant: str
    fmt: str
    archive: str  # file name of the published archive
    directory: str  # name of the directory the archive extracts to
    md5: str  # published MD5 of the archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]


SOURCES: dict[tuple[str, str], CifarSource] = {
    ("cifar10", "python"): CifarSource(
        "cifar10", "python", "cifar-10-python.tar.gz", "cifar-10-batches-py",
        "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    ),
    ("cifar10", "binary"): CifarSource(
        "cifar10", "binary", "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
        "c32a1d4ab5d03f1284b67883e8d87530",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
    ),
    ("cifar100", "python"): CifarSource(
        "cifar100", "python", "cifar-100-python.tar.gz", "cifar-100-python",
        "eb9058c3a382ffc7106e4002c42a8d85", ("train",), ("test",),
    ),
    ("cifar100", "binary"): CifarSource(
        "cifar100", "binary", "cifar-100-binary.tar.gz", "cifar-100-binary",
        "03b5dce01913d631647c71ecec9e9cb8", ("train.bin",), ("test.bin",),
    ),
}

NUM_CLASSES = {("cifar10", "fine"): 10, ("cifar100", "fine"): 100, ("cifar100", "coarse"): 20}


# The function numpy pickles arrays with, found without naming numpy's private module
# (numpy.core.multiarray in numpy 1.x, numpy._core.multiarray in 2.x).
_reconstruct = np.zeros(1).__reduce__()[0]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle only plain containers, bytes, numbers and numpy arrays: any global but numpy's
    array reconstruction, ``ndarray`` and ``dtype`` raises :class:`pickle.UnpicklingError` unresolved."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': CIFAR batch files contain only "
                "dicts, lists, bytes and numpy arrays, so this file is not a genuine CIFAR batch"
            ) from None


def restricted_load(data: bytes, *, source: str = "<bytes>") -> object:
    """Unpickle ``data`` (a Python-2 era CIFAR batch) with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DatasetError(f"{source}: {err}") from err
    except Exception as err:  # truncated or garbled pickle streams raise many types
        raise DatasetError(
            f"{source} is not a readable CIFAR batch pickle ({type(err).__name__}: {err}); "
            "delete the extracted directory and extract the archive again"
        ) from err


def verify_archive(archive: Path, source: CifarSource, sha256: str | None) -> str:
    """Check ``archive`` against ``sha256`` if given, else the published MD5; return ``algo:hex``."""
    algorithm, expected = ("sha256", sha256.lower()) if sha256 else ("md5", source.md5)
    with open(archive, "rb") as f:
        actual = hashlib.file_digest(f, algorithm).hexdigest()
    if actual != expected:
        hint = (
            "the sha256 given in the config does not match this file; correct the config or "
            "replace the file"
            if sha256
            else "the file is incomplete, corrupted or not the official archive; download it "
            "again from https://www.cs.toronto.edu/~kriz/cifar.html (or set dataset.sha256 "
            "to the checksum of your own copy)"
        )
        raise DatasetError(
            f"checksum mismatch for {archive}: {algorithm} is {actual}, expected {expected}; {hint}"
        )
    return f"{algorithm}:{actual}"


MAX_MEMBER_MB = 512  # the largest member of a CIFAR archive is ~150 MiB (CIFAR-100's train)
MAX_EXTRACTED_MB = 1024  # the whole of either archive extracts to ~180 MiB


def _check_members(members: list[tarfile.TarInfo], archive: Path, max_member_mb: float, max_extracted_mb: float):
    """Refuse, before anything is written, members with an absolute path or a '..' component,
    members that are not regular files or directories, and members that (each, or all together)
    would extract to more MiB than the limits, as their headers say."""
    for member in members:
        path = PureWindowsPath(member.name)  # splits at '/' and '\\'; its anchor is a root or a drive
        if path.anchor or ".." in path.parts:
            raise DatasetError(
                f"unsafe archive {archive}: member {member.name!r} has an absolute path or a '..' "
                "component and would be written outside the extraction directory; refusing to "
                "extract — use the official archive"
            )
        if not (member.isfile() or member.isdir()):
            kind = "link" if (member.issym() or member.islnk()) else "device, FIFO or special file"
            raise DatasetError(
                f"unsafe archive {archive}: member {member.name!r} is a {kind}; CIFAR archives hold only "
                "regular files and directories — refusing to extract, use the official archive"
            )
        if member.size > max_member_mb * 2**20:
            raise DatasetError(
                f"archive {archive}: member {member.name!r} would extract to {member.size / 2**20:,.0f} MiB, "
                f"more than dataset.max_member_mb = {max_member_mb:g}; refusing to extract — use the "
                "official archive (or raise the limit if you trust this one)"
            )
    total = sum(m.size for m in members)
    if total > max_extracted_mb * 2**20:
        raise DatasetError(
            f"archive {archive} would extract to {total / 2**20:,.0f} MiB, more than "
            f"dataset.max_extracted_mb = {max_extracted_mb:g}; refusing to extract — use the official "
            "archive (or raise the limit if you trust this one)"
        )


def safe_extract(archive: Path, target_parent: Path, directory: str, digest: str, *, max_member_mb: float = MAX_MEMBER_MB, max_extracted_mb: float = MAX_EXTRACTED_MB) -> Path:
    """Extract ``archive`` into ``target_parent/directory`` atomically: once every member is checked,
    members go into a fresh temporary directory, renamed into place after the marker is written (a
    concurrent extraction of the same archive that wins the rename is accepted)."""
    target = target_parent / directory
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory}.", suffix=".partial", dir=target_parent))
    except OSError as err:
        raise DatasetError(
            f"cannot extract {archive} into {target_parent} ({err}); make that directory "
            f"writable, or extract the archive yourself so that {target} exists"
        ) from err
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()  # reads the whole archive: truncation shows here
                _check_members(members, archive, max_member_mb, max_extracted_mb)
                try:
                    tar.extractall(tmp, members=members, filter="data")
                except OSError as err:  # the disk's fault, not the archive's
                    if err.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise DatasetError(
                            f"disk full while extracting {archive} into {target_parent} ({err.strerror}); "
                            "the archive is fine: free some space (about 200 MB) and rerun"
                        ) from err
                    raise DatasetError(
                        f"cannot write the extracted files of {archive} into {target_parent} ({err}); "
                        "make that directory writable and rerun"
                    ) from err
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise DatasetError(
                f"cannot read archive {archive}: it is truncated or corrupt ({type(err).__name__}: "
                f"{err}); download it again"
            ) from err
        extracted = tmp / directory
        if not extracted.is_dir():
            raise DatasetError(
                f"archive {archive} does not contain the directory {directory!r}; is it the "
                "right CIFAR archive?"
            )
        (extracted / _MARKER).write_text(json.dumps({"archive": archive.name, "digest": digest}))
        if target.exists():
            shutil.rmtree(target)  # stale (marker mismatch), checked by the caller
        try:
            extracted.rename(target)
        except OSError:
            if _marker_digest(target) != digest:  # someone else's rename won with other data
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _marker_digest(directory: Path) -> str | None:
    try:
        return json.loads((directory / _MARKER).read_text()).get("digest")
    except (OSError, ValueError):
        return None


def _candidates(path: Path, source: CifarSource) -> tuple[Path | None, Path | None]:
    """The archive and the extracted directory ``path`` may point to (either may not exist)."""
    if path.is_file() or path.name.endswith(".tar.gz"):
        return path, None
    if path.name == source.directory:
        return None, path
    return path / source.archive, path / source.directory


def _available(path: Path, source: CifarSource) -> bool:
    archive, directory = _candidates(path, source)
    return bool((archive and archive.is_file()) or (directory and directory.is_dir()))


def resolve_source(path: Path, variant: str, fmt: str | None) -> CifarSource:
    """Pick the :class:`CifarSource` for ``variant``; ``fmt=None`` takes what exists (python first)."""
    if variant not in ("cifar10", "cifar100"):
        raise DatasetError(f"unknown CIFAR variant {variant!r}: expected 'cifar10' or 'cifar100'")
    if fmt is not None:
        if fmt not in ("python", "binary"):
            raise DatasetError(f"unknown CIFAR format {fmt!r}: expected 'python' or 'binary'")
        return SOURCES[(variant, fmt)]
    sources = [SOURCES[(variant, "python")], SOURCES[(variant, "binary")]]
    if path.is_file():  # an archive named directly: its name says which version it is
        for source in sources:
            if source.archive == path.name:
                return source
        raise DatasetError(
            f"cannot tell the format of {path} from its name (expected one of "
            f"{[s.archive for s in sources]}); set dataset.fmt to 'python' or 'binary'"
        )
    for source in sources:
        if _available(path, source):
            return source
    names = " or ".join(f"{s.archive} (or its extracted {s.directory}/)" for s in sources)
    raise DatasetError(
        f"no {variant} data found: looked in {path} for {names}; download the archive from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and put it there (or set dataset.path)"
    )


def prepare_directory(path: Path, source: CifarSource, sha256: str | None = None, *,
                      max_member_mb: float = MAX_MEMBER_MB, max_extracted_mb: float = MAX_EXTRACTED_MB) -> Path:
    """The extracted directory for ``source``, verifying and extracting the archive if needed."""
    archive, directory = _candidates(path, source)
    if archive is not None and archive.is_file():
        digest = verify_archive(archive, source, sha256)
        target = archive.parent / source.directory
        if target.is_dir() and _marker_digest(target) == digest:
            return target
        log.info("extracting %s to %s", archive, target)
        return safe_extract(archive, archive.parent, source.directory, digest, max_member_mb=max_member_mb, max_extracted_mb=max_extracted_mb)
    if directory is not None and directory.is_dir():
        log.info("reading the extracted directory %s as is (no archive there, no checksum checked)",
                 directory)
        return directory
    where = archive if archive is not None else path
    raise DatasetError(
        f"{source.variant} ({source.fmt} version) not found: looked for {where}"
        + (f" and the extracted directory {directory}" if directory is not None else "")
        + f"; expected the file {source.archive} — download it from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and put it in that directory"
    )


def _read_python_file(file: Path, variant: str, label_mode: str) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(_read_bytes(file), source=str(file))
    key = b"labels" if variant == "cifar10" else (b"fine_labels" if label_mode == "fine" else b"coarse_labels")
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{file} is not a {variant} batch: expected keys b'data' and {key!r}, found {found}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(data) != len(labels):
        raise DatasetError(
            f"{file}: b'data' must be uint8 (N, {IMAGE_BYTES}) with one label per row, found "
            f"{data.dtype} {data.shape} and {len(labels)} labels"
        )
    return data, labels


def _read_binary_file(file: Path, variant: str, label_mode: str) -> tuple[np.ndarray, np.ndarray]:
    label_bytes = 1 if variant == "cifar10" else 2
    raw = np.frombuffer(_read_bytes(file), dtype=np.uint8)
    record = label_bytes + IMAGE_BYTES
    if raw.size == 0 or raw.size % record:
        raise DatasetError(
            f"{file} has {raw.size} bytes, not a whole number of {record}-byte {variant} records; "
            "it is truncated or not a CIFAR binary batch — extract the archive again"
        )
    records = raw.reshape(-1, record)
    # CIFAR-100 records start with the coarse label, then the fine label.
    column = 0 if variant == "cifar10" else (1 if label_mode == "fine" else 0)
    return records[:, label_bytes:], records[:, column].astype(np.int64)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            f"{file} is missing: the extracted directory {file.parent} is incomplete; delete it "
            "and extract the archive again"
        ) from None


def _read_split(directory: Path, files: tuple[str, ...], source: CifarSource, label_mode: str,
                limit: int | None, image_size: int | None) -> Split:
    reader = _read_python_file if source.fmt == "python" else _read_binary_file
    num_classes = NUM_CLASSES[(source.variant, label_mode)]
    parts = []  # (data, labels) of each file read
    for name in files:
        if limit is not None and sum(len(labels) for _, labels in parts) >= limit:
            break
        parts.append(reader(directory / name, source.variant, label_mode))
    data, labels = (np.concatenate(arrays)[:limit] for arrays in zip(*parts))
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{directory}: labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()}); "
            "is the variant or label_mode right?"
        )
    images = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    if image_size:
        images = resize_images(images, image_size)
    return Split(images=images, labels=labels, sample_id=np.arange(len(labels), dtype=np.int64))


def load_cifar(
    path: str | os.PathLike,
    *,
    variant: str = "cifar10",
    fmt: str | None = None,
    label_mode: str = "fine",
    max_train: int | None = None,
    max_eval: int | None = None,
    sha256: str | None = None,
    max_member_mb: float = MAX_MEMBER_MB,
    max_extracted_mb: float = MAX_EXTRACTED_MB,
    image_size: int | None = None,
) -> Dataset:
    """Load CIFAR-10 or CIFAR-100 as a :class:`Dataset` named after the variant (``"cifar100-coarse"``
    for coarse labels): the official train set and, as ``eval``, the official test set.

    ``path`` is the directory holding the archive or its extracted directory, or either itself;
    ``fmt=None`` takes whichever is present, python first. ``max_train``/``max_eval`` keep the first
    rows. An archive whose members (each, or all together) would extract to more than
    ``max_member_mb``/``max_extracted_mb`` MiB is refused. ``image_size`` (if given) is the side the
    images are bilinearly resized to. Every problem is a :class:`DatasetError`.
    """
    if label_mode not in ("fine", "coarse") or (variant == "cifar10" and label_mode != "fine"):
        raise DatasetError(
            f"label_mode {label_mode!r} is not valid for {variant}: CIFAR-100 has 'fine' (100) "
            "and 'coarse' (20) labels, CIFAR-10 only 'fine'"
        )
    for name, value in (("max_train", max_train), ("max_eval", max_eval)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise DatasetError(f"{name} must be a positive integer or None, got {value!r}")
    path = Path(path).expanduser()
    source = resolve_source(path, variant, fmt)
    directory = prepare_directory(path, source, sha256, max_member_mb=max_member_mb, max_extracted_mb=max_extracted_mb)
    train = _read_split(directory, source.train_files, source, label_mode, max_train, image_size)
    test = _read_split(directory, source.test_files, source, label_mode, max_eval, image_size)
    name = variant if label_mode == "fine" else f"{variant}-coarse"
    return Dataset(name=name, train=train, eval=test, num_classes=NUM_CLASSES[(variant, label_mode)])


__all__ = ["SOURCES", "CifarSource", "RestrictedUnpickler", "load_cifar", "prepare_directory", "restricted_load",
           "safe_extract", "verify_archive"]
