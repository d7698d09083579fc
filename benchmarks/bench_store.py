"""Store reads against the raw file rate, and what checking stores against their integrity
record costs, measured side by side in one run.

- Reading: every layer of a 0.87 GiB activation store (the standard workload's model) read
  whole by ``ActivationStore.read`` (the first read of an object checks each file's CRC32C; a
  second read of the same object does not), against reading the same files' bytes with
  ``os.preadv`` into new memory (as the store's reads go) and into memory already touched —
  all from the page cache (the files were just written; RAM permitting).

- Similarity from stores: ``compare_stores`` on the standard workload (two models × 24 layers,
  1,024 samples in batches of 256; 1.75 GiB of stores), cached and out of core, with the
  pipeline's default 10 passes and with 1 pass (the worst case: every byte checked is used
  once), each round run twice in turn: as shipped (every shard file's CRC32C checked the first
  time it is read) and with every file marked as already checked (no shard checksums, no
  whole-file first reads).
- Extraction: the extract rule's path (ResNet-20 ×1 at 32×32, CIFAR-shaped input) writing a
  store, as shipped and with the CRC32C function replaced by one that returns 0 (the record is
  then wrong, the time is what is left without checksums).

Besides the ratios: the CPU seconds spent inside CRC32C in the shipped runs, the process's user
and system CPU time (on a VM whose freed memory faults again when reused, system time — page
faults — swings wall times by seconds between identical runs), and CRC32C's own rate.

    .venv/bin/python benchmarks/bench_store.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import google_crc32c
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import N, STANDARD_SHAPES, machine_facts, make_model_activations, print_facts, write_model_store  # noqa: E402

import layersim.store  # noqa: E402
from layersim.engine import compare_stores  # noqa: E402
from layersim.store import write_activations  # noqa: E402

CRC_SECONDS = [0.0]
_LOCK = threading.Lock()
_VALUE, _EXTEND = google_crc32c.value, google_crc32c.extend


def _timed(function):
    def timed(*args):
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            with _LOCK:
                CRC_SECONDS[0] += time.perf_counter() - start

    return timed


google_crc32c.value, google_crc32c.extend = _timed(_VALUE), _timed(_EXTEND)  # the store imports them per call


@contextmanager
def shard_checks_skipped():
    """Every ActivationStore opened inside starts with all its files marked as checked."""
    init = layersim.store.ActivationStore.__init__

    def init_checked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._verified.update(self._integrity.files)

    layersim.store.ActivationStore.__init__ = init_checked
    try:
        yield
    finally:
        layersim.store.ActivationStore.__init__ = init


@contextmanager
def no_checksums():
    """CRC32C replaced by a constant (the records written are then wrong)."""
    google_crc32c.value, google_crc32c.extend = (lambda data: 0), (lambda crc, data: 0)
    try:
        yield
    finally:
        google_crc32c.value, google_crc32c.extend = _timed(_VALUE), _timed(_EXTEND)


def timed(fn) -> tuple[float, float, float, float]:
    """Wall seconds of ``fn()``, the CRC32C seconds spent in it (summed over threads), and the
    process's user and system CPU seconds in it."""
    CRC_SECONDS[0] = 0.0
    before, start = os.times(), time.perf_counter()
    fn()
    wall, after = time.perf_counter() - start, os.times()
    return wall, CRC_SECONDS[0], after.user - before.user, after.system - before.system


def in_turn(shipped, other, repeat: int) -> tuple[list, list]:
    """``repeat`` rounds of ``shipped(i)`` and ``other(i)``, each going first every other round:
    their :func:`timed` results."""
    times: tuple[list, list] = ([], [])
    for i in range(repeat):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            times[k].append((shipped, other)[k](i))
    return times


def similarity(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: str(write_model_store(Path(tmp) / f"{name}.zarr", make_model_activations(STANDARD_SHAPES, seed=seed)))
                 for name, seed in (("a", 0), ("b", 1))}
        gib = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**30

        def run(cache_mb, passes):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the constant logits layer is reported undefined
                compare_stores(paths, [("a", "b")], batch_size=N, passes=passes, threads=2, cache_mb=cache_mb, progress=False)

        for passes, cache_mb, label in ((10, 4096, "cached"), (10, 0, "out of core"), (1, 4096, "cached"), (1, 0, "out of core")):
            def unchecked(_):
                with shard_checks_skipped():
                    return timed(lambda: run(cache_mb, passes))

            checked, skipped = in_turn(lambda _: timed(lambda: run(cache_mb, passes)), unchecked, repeat)
            wall_checked, crc = min(checked)[:2]
            wall_skipped = min(skipped)[0]
            user_checked, user_skipped = (float(np.median([r[2] for r in runs])) for runs in (checked, skipped))
            sys_checked, sys_skipped = (float(np.median([r[3] for r in runs])) for runs in (checked, skipped))
            print(
                f"compare_stores ({passes} passes, {label}, {gib:.2f} GiB of stores, 2 Dask threads): wall, best of {repeat}: "
                f"checked {wall_checked:.3f} s, shard checksums skipped {wall_skipped:.3f} s ({100 * (wall_checked / wall_skipped - 1):+.1f} %); "
                f"median CPU user/system: checked {user_checked:.2f}/{sys_checked:.2f} s, skipped {user_skipped:.2f}/{sys_skipped:.2f} s "
                f"(user {100 * (user_checked / user_skipped - 1):+.1f} %); CRC32C {crc:.3f} CPU-s = {100 * crc / wall_checked:.1f} % of the checked wall time"
            )


def reading(repeat: int) -> None:
    from layersim.store import ActivationStore

    with tempfile.TemporaryDirectory() as tmp:
        path = write_model_store(Path(tmp) / "a.zarr", make_model_activations(STANDARD_SHAPES))
        files = [f for f in path.rglob("*") if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        reused = np.empty(total, np.uint8)

        def raw(buffer=None):
            buffer = np.empty(total, np.uint8) if buffer is None else buffer
            offset = 0
            for f in files:
                with open(f, "rb") as handle:
                    offset += os.preadv(handle.fileno(), [buffer[offset:]], 0)

        def store(again=False):
            opened = ActivationStore(path)
            for layer in opened.layers:
                opened.read(layer)
            if again:
                return timed(lambda: [opened.read(layer) for layer in opened.layers])[0]

        raw(reused)  # the files into the page cache
        reused_s = min(timed(lambda: raw(reused))[0] for _ in range(repeat))
        raw_s = min(timed(raw)[0] for _ in range(repeat))
        store_s, crc = min(timed(store) for _ in range(repeat))[:2]
        again_s = min(store(again=True) for _ in range(repeat))
    gib = total / 2**30
    print(
        f"reading a {gib:.2f} GiB store whole (page cache): raw file reads into new memory {gib / raw_s:.2f} GiB/s "
        f"(into memory already touched: {gib / reused_s:.2f} GiB/s); ActivationStore.read (new memory, as the engine "
        f"reads) {gib / store_s:.2f} GiB/s = {100 * raw_s / store_s:.0f} % of raw, checksums included ({crc:.3f} s CRC32C); "
        f"read again (checked already) {gib / again_s:.2f} GiB/s = {100 * raw_s / again_s:.0f} % of raw"
    )


def extraction(repeat: int) -> None:
    import torch

    from layersim.extract.torch import overlap_writes, torch_layer_batches
    from layersim.models.torch import CifarResNet

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = CifarResNet(20, 1, in_channels=3).eval()
    images = np.random.default_rng(0).standard_normal((512, 3, 32, 32), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        def extract(name):
            write_activations(
                Path(tmp) / name, torch_layer_batches(model, images, 128, progress=False), sample_id=np.arange(len(images)),
                labels=np.zeros(len(images)), attrs={}, write_threads=torch.get_num_threads(),
                overlap=overlap_writes("cpu", torch.get_num_threads()),
            )

        def once(name):  # timed; the store measured and deleted
            result = timed(lambda: extract(name))
            sizes[0] = sum(f.stat().st_size for f in (Path(tmp) / name).rglob("*") if f.is_file()) / 2**20
            shutil.rmtree(Path(tmp) / name)
            return result

        def without(i):
            with no_checksums():
                return once(f"u{i}.zarr")

        sizes = [0.0]
        checked, unchecked = in_turn(lambda i: once(f"c{i}.zarr"), without, repeat)
        mib = sizes[0]
    wall_checked, crc = min(checked)[:2]
    wall_unchecked = min(unchecked)[0]
    user_checked, user_unchecked = (float(np.median([r[2] for r in runs])) for runs in (checked, unchecked))
    print(
        f"extraction (ResNet-20 ×1, 512 images 32×32×3, {mib:.0f} MiB store): wall, best of {repeat}: with checksums "
        f"{wall_checked:.3f} s, without {wall_unchecked:.3f} s ({100 * (wall_checked / wall_unchecked - 1):+.1f} %); median user "
        f"CPU {user_checked:.2f} vs {user_unchecked:.2f} s ({100 * (user_checked / user_unchecked - 1):+.1f} %); CRC32C {crc:.3f} CPU-s "
        f"= {100 * crc / wall_checked:.1f} % of the wall time with checksums"
    )


def crc_rate() -> None:
    data = np.random.default_rng(0).integers(0, 256, 256 << 20, dtype=np.uint8)
    best = min(timed(lambda: _VALUE(data))[0] for _ in range(3))
    print(f"CRC32C ({google_crc32c.implementation} implementation), one thread: {0.25 / best:.1f} GiB/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    print_facts(machine_facts())
    crc_rate()
    reading(3 if args.quick else 5)
    similarity(2 if args.quick else 6)
    extraction(2 if args.quick else 6)
