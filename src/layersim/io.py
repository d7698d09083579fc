"""Writing outputs: every file or directory is written under a temporary name and renamed into
place when complete (:func:`atomic_write`), so an output that exists is always whole; small
CSV, JSON and text tables are built on it."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from layersim.errors import LayersimError

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, what: str = "", error: type[LayersimError] = LayersimError) -> Path:
    """Call ``write(tmp)`` to create a file or a directory at ``tmp`` and move it to ``path``.

    ``tmp`` is ``<stem>.partial<suffix>`` beside ``path``. ``path`` is replaced only once
    ``write`` has returned (an output there is moved aside to ``<stem>.old<suffix>`` where a
    directory replaces it): a failure removes ``tmp`` and leaves an existing ``path`` as it was.
    A full disk (``ENOSPC``/``EDQUOT``) is one ``error`` naming ``what`` was written.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        write(tmp)
        if tmp.is_dir() and (path.exists() or path.is_symlink()):  # os.replace cannot replace a directory
            old = path.with_name(f"{path.stem}.old{path.suffix}")
            _remove(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            raise error(f"disk full while writing {what + ' ' if what else ''}{path}: free space and rerun (nothing of it was kept; {err.strerror})") from err
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(obj, path: str | os.PathLike) -> Path:
    """``obj`` as indented JSON (numpy numbers as floats), atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=float))


def write_csv(rows: list[dict], path: str | os.PathLike, comments: list[str] | None = None, *, float_format: str = ".6g", lineterminator: str = "\n") -> Path:
    """Rows (dicts with the same keys) → CSV with ``# comment`` lines first, atomically.

    Floats are written with ``format(v, float_format)`` (``""``: the shortest exact form).
    """
    buf = io.StringIO()
    for line in comments or []:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator=lineterminator)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (format(v, float_format) if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue(), newline=""))


def read_csv(path: str | os.PathLike) -> list[dict]:
    """A CSV written by :func:`write_csv` (comment lines skipped; ints and floats parsed)."""
    lines = [l for l in Path(path).read_text().splitlines() if not l.startswith("#")]
    return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(lines)]


def _number(text: str) -> int | float | str:
    """``text`` as an int, else as a float, else as it is."""
    for parse in (int, float):
        with contextlib.suppress(ValueError):
            return parse(text)
    return text


def read_comments(path: str | os.PathLike) -> dict[str, str]:
    """The ``# key: value`` comment lines of a CSV written by :func:`write_csv`."""
    pairs = (l[2:].partition(": ") for l in Path(path).read_text().splitlines() if l.startswith("# "))
    return {key: value for key, _, value in pairs}
