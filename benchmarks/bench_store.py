"""Store reads against the raw file rate, and what checking stores against their integrity
record costs, measured side by side in one run.

- Reading: a 0.87 GiB activation store (the standard workload's model) read as the engine reads
  it: every layer whole (a cached store) and one pass of minibatches of 256 sorted random rows,
  every layer each (out of core); each the first time (every shard file's CRC32C checked; the
  store opened anew) and again (checked already). Against raw ``os.preadv`` of the same bytes
  into new memory: the files whole, one buffer each, and the minibatches' rows, one call per run
  of consecutive rows — all from the page cache (the files were just written; RAM permitting).
- Writing: the same store written by ``write_activations`` from rows in memory, against raw
  writes of the same bytes into new files (one a layer, appended batch by batch).

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
from layersim.engine.accumulator import minibatch_rows  # noqa: E402
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
        self._integrity.verified.update(self._integrity.files)

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


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def reading(repeat: int) -> None:
    """Store reads against raw reads of the same files' bytes, as the engine reads: each layer
    whole (a cached store) and minibatch by minibatch (out of core), from the page cache."""
    from layersim.store import ActivationStore

    with tempfile.TemporaryDirectory() as tmp:
        path = write_model_store(Path(tmp) / "a.zarr", make_model_activations(STANDARD_SHAPES))
        opened = ActivationStore(path)
        layers = opened.layers
        shard_files = {layer: sorted((path / layer).glob("c.*")) for layer in layers}
        files = [f for f in path.rglob("*") if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        row_bytes = {layer: 4 * int(np.prod(opened.feature_shape(layer))) for layer in layers}
        minibatches = minibatch_rows(len(opened), N, passes=1)
        minibatch_bytes = sum(len(rows) * row_bytes[layer] for rows in minibatches for layer in layers)

        def raw(buffer=None):  # every file whole: into a new buffer each (as the store reads a layer into a new array), or into ``buffer``
            offset = 0
            for f in files:
                with open(f, "rb") as handle:
                    into = np.empty(os.fstat(handle.fileno()).st_size, np.uint8) if buffer is None else buffer[offset:]
                    offset += os.preadv(handle.fileno(), [into], 0)

        def raw_minibatches():  # the same rows' bytes: one preadv per run of consecutive rows
            for rows in minibatches:
                for layer in layers:
                    out = np.empty((len(rows), row_bytes[layer] // 4), np.float32)
                    with open(shard_files[layer][0], "rb") as handle:  # one shard a layer here
                        for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows) != 1) + 1):
                            os.preadv(handle.fileno(), [out[run[0] : run[-1] + 1]], int(rows[run[0]]) * row_bytes[layer])

        def whole(store):
            for layer in layers:
                store.read(layer)

        def by_minibatch(store):
            for rows in minibatches:
                for layer in layers:
                    store.read(layer, rows)

        checked_again = ActivationStore(path)
        whole(checked_again)
        assert all(len(files) == 1 for files in shard_files.values())
        reused = np.empty(total, np.uint8)
        raw(reused)  # the files into the page cache
        reused_s = min(timed(lambda: raw(reused))[0] for _ in range(repeat))
        runs = {"raw": raw, "first": lambda: whole(ActivationStore(path)), "again": lambda: whole(checked_again),  # first: opening included
                "raw_mb": raw_minibatches, "first_mb": lambda: by_minibatch(ActivationStore(path)), "again_mb": lambda: by_minibatch(checked_again)}
        times: dict[str, list] = {key: [] for key in runs}
        for _ in range(repeat):  # in turn, so that a change in the shared host's load hits all alike
            for key, run in runs.items():
                times[key].append(timed(run))
    gib, mb_gib = total / 2**30, minibatch_bytes / 2**30
    raw_s, first_s, again_s, raw_mb_s, first_mb_s, again_mb_s = (min(t[0] for t in times[key]) for key in runs)
    cpu = {key: float(np.median([t[2] + t[3] for t in times[key]])) for key in runs}  # user + system
    print(
        f"reading a {gib:.2f} GiB store (page cache), best of {repeat}, {load()}: raw preadv of its files, each into new memory, "
        f"{gib / raw_s:.2f} GiB/s (into memory already touched: {gib / reused_s:.2f} GiB/s)\n"
        f"  every layer whole (a cached store): ActivationStore.read, first read (every byte checked, opening included) "
        f"{gib / first_s:.2f} GiB/s = {100 * raw_s / first_s:.0f} % of raw; again (checked already) {gib / again_s:.2f} GiB/s "
        f"= {100 * raw_s / again_s:.0f} % of raw\n"
        f"  by minibatch (out of core: {len(minibatches)} minibatches of {N} sorted random rows, every layer; {mb_gib:.2f} GiB "
        f"delivered): raw preadv of the same rows (one call per run of consecutive rows) into new memory {mb_gib / raw_mb_s:.2f} GiB/s; "
        f"ActivationStore.read, first pass (every shard file read whole and checked once) {mb_gib / first_mb_s:.2f} GiB/s "
        f"= {100 * raw_mb_s / first_mb_s:.0f} % of raw; later passes {mb_gib / again_mb_s:.2f} GiB/s = {100 * raw_mb_s / again_mb_s:.0f} % of raw\n"
        f"  median CPU seconds (user + system; wall times on a loaded host include waiting for a core): whole: raw {cpu['raw']:.3f}, "
        f"first {cpu['first']:.3f}, again {cpu['again']:.3f}; by minibatch: raw {cpu['raw_mb']:.3f}, first {cpu['first_mb']:.3f}, "
        f"later {cpu['again_mb']:.3f}"
    )


def writing(repeat: int) -> None:
    """Writing a store (the standard workload's model, rows in memory) against raw writes of
    the same bytes: one new file a layer, appended batch by batch, as the store's shard files are."""
    batches = make_model_activations(STANDARD_SHAPES)
    total = sum(x.nbytes for layers in batches for x in layers)
    with tempfile.TemporaryDirectory() as tmp:
        def raw(i):
            directory = Path(tmp) / f"raw{i}"
            directory.mkdir()
            result = timed(lambda: [write_layer(directory / f"l{k}", [layers[k] for layers in batches]) for k in range(len(STANDARD_SHAPES))])
            shutil.rmtree(directory)
            return result

        def write_layer(file, parts):
            with open(file, "wb") as handle:
                for part in parts:
                    handle.write(part.data)

        def store(i):
            result = timed(lambda: write_model_store(Path(tmp) / f"s{i}.zarr", batches))
            shutil.rmtree(Path(tmp) / f"s{i}.zarr")
            return result

        store_times, raw_times = in_turn(store, raw, repeat)
    gib = total / 2**30
    store_s, raw_s = min(store_times)[0], min(raw_times)[0]
    store_user, store_system, raw_user, raw_system = (float(np.median([t[k] for t in runs])) for runs in (store_times, raw_times) for k in (2, 3))
    print(
        f"writing a {gib:.2f} GiB store (rows in memory), best of {repeat}, {load()}: raw writes of the same bytes into new files "
        f"{gib / raw_s:.2f} GiB/s; write_activations (finite check, CRC32C, index, integrity record, atomic rename included) "
        f"{gib / store_s:.2f} GiB/s = {100 * raw_s / store_s:.0f} % of raw; median CPU seconds user/system (the system time — the "
        f"kernel's page-cache writes — swings most between identical runs on a shared host): raw {raw_user:.2f}/{raw_system:.2f}, "
        f"store {store_user:.2f}/{store_system:.2f}"
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
    print("a shared machine: other work runs beside this one; each section prints the load average beside its figures")
    crc_rate()
    reading(3 if args.quick else 5)
    writing(3 if args.quick else 6)
    similarity(2 if args.quick else 6)
    extraction(2 if args.quick else 6)
