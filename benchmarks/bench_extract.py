"""Extraction throughput: the extract rule's path (torch_layer_batches + write_activations to
Zarr) against the bare forward pass of the same CifarResNet on the same images.

Beside it, what the machine allows, measured in the same run:
- writing the same bytes to new plain files (one per layer), alone, from memory: its wall and
  CPU time (CPU time counts every thread of the process; writing new pages costs the kernel
  page allocation and a copy);
- the bound: extraction does the forward pass's CPU work and the writes' CPU work, so on
  ``cores`` cores it takes at least max(bare forward, writes alone, (forward CPU + writes
  CPU) / cores) of wall time;
- forward pass + plain file writes one after the other in one thread (no Zarr, no overlap);
- extraction with one write thread instead of as many as the forward pass's threads (what
  ``extract_torch`` gives ``write_activations``);
- extraction in the other of ``write_activations``' two modes: the writes taking turns with
  the forward pass where ``extract_torch`` overlaps them (``overlap_writes``: on a GPU, and on
  the CPU with up to 2 threads), or overlapping where it takes turns.

With ``--keras``, the same for a Keras ResNet-20 at 32×32 (TensorFlow on the same threads):
``predict_on_batch`` of the model against the extract rule's Keras path (``keras_layer_batches``
+ ``write_activations`` with ``overlap=True``, as ``extract_keras``), each store's first batch
tracing the multi-output function; and that path taking turns instead.

    .venv/bin/python benchmarks/bench_extract.py [--quick] [--dir D] [--device cuda] [--keras]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from layersim.extract.torch import overlap_writes, torch_layer_batches
from layersim.models.torch import CifarResNet
from layersim.store import write_activations


def main(args) -> None:
    quick, device = args.quick, args.device
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    repeat = 3 if quick else 7
    if device != "cpu":
        print(f"device: {device} ({torch.cuda.get_device_name(device)}); the bare forward includes copying the images to it")
    for label, size, n_images in (("digits default (8×8, 1 channel)", 8, 540), ("CIFAR (32×32, 3 channels)", 32, 256 if quick else 512)):
        channels = 1 if size == 8 else 3
        model = CifarResNet(20, 1, in_channels=channels).eval().to(device)
        images = np.random.default_rng(0).standard_normal((n_images, channels, size, size), dtype=np.float32)

        def bare():
            with torch.no_grad():
                for s in range(0, n_images, 128):
                    model(torch.from_numpy(images[s : s + 128]).to(device))
            if device != "cpu":
                torch.cuda.synchronize(device)

        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            path = Path(tmp) / "m.zarr"

            rule_overlap = overlap_writes(device, torch.get_num_threads())  # as extract_torch

            def extract(write_threads=torch.get_num_threads(), overlap=rule_overlap):
                write_activations(path, torch_layer_batches(model, images, 128, progress=False, device=device), sample_id=np.arange(n_images), labels=np.zeros(n_images), attrs={}, shard_chunks=4, write_threads=write_threads, overlap=overlap)

            raw_dir = Path(tmp) / "raw"

            def write_files(batches) -> None:
                raw_dir.mkdir()
                files = {}
                try:
                    for batch in batches:
                        for name, value in batch.items():
                            if name not in files:
                                files[name] = open(raw_dir / name, "wb")
                            files[name].write(np.ascontiguousarray(value).data)
                finally:
                    for f in files.values():
                        f.close()

            def forward_and_raw_write():
                """The same forward pass and recording, each layer's bytes written to a plain
                file per layer in the same thread (no Zarr, no overlap)."""
                write_files(torch_layer_batches(model, images, 128, progress=False, device=device))

            recorded = list(torch_layer_batches(model, images, 128, progress=False, device=device))
            bare()  # warm-up (cuDNN's algorithm choice on a GPU)
            runs = {  # what each writes (deleted just before it runs, outside the timing) and how
                "bare": (None, bare),
                "extract": (path, extract),
                "extract_1": (path, lambda: extract(1)),
                "extract_other": (path, lambda: extract(overlap=not rule_overlap)),
                "raw": (raw_dir, forward_and_raw_write),
                "writes": (raw_dir, lambda: write_files(recorded)),
            }
            times = rounds(runs, repeat)
            recorded.clear()  # free the recorded activations before the next case
            mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        (bare_s, bare_cpu), (writes_s, writes_cpu) = min(times["bare"]), min(times["writes"])
        extract_s, extract_1_s, other_s, raw_s = (min(times[name])[0] for name in ("extract", "extract_1", "extract_other", "raw"))
        mode, other = ("overlapping", "taking turns") if rule_overlap else ("taking turns", "overlapping")
        median = {name: float(np.median([wall for wall, _ in t])) for name, t in times.items()}
        cores = len(os.sched_getaffinity(0))
        bound_s = max(bare_s, writes_s, (bare_cpu + writes_cpu) / cores)
        print(
            f"ResNet-20 ×1, {label}, {n_images} images ({mib:.0f} MiB of activations, {mib / bare_s:.0f} MiB/s at the bare forward's rate): "
            f"bare forward {bare_s:.3f} s ({bare_cpu:.2f} CPU-s); writing the bytes to new plain files alone {writes_s:.3f} s ({writes_cpu:.2f} CPU-s, {mib / writes_s:.0f} MiB/s); "
            f"bound max(forward, writes, CPU-s / {cores} cores) {bound_s:.3f} s = {bound_s / bare_s:.2f}× bare; "
            f"forward + plain writes in one thread {raw_s:.3f} s = {raw_s / bare_s:.2f}×; "
            f"extract to Zarr {extract_s:.3f} s = {extract_s / bare_s:.2f}× bare, {extract_s / bound_s:.2f}× the bound "
            f"({torch.get_num_threads()} write threads, {mode}; with 1: {extract_1_s:.3f} s = {extract_1_s / bare_s:.2f}× bare; {other}: {other_s:.3f} s = {other_s / bare_s:.2f}×). "
            f"Medians of {repeat} rounds: bare {median['bare']:.3f} s, extract {median['extract']:.3f} s = {median['extract'] / median['bare']:.2f}× "
            f"(with 1 write thread {median['extract_1']:.3f} s = {median['extract_1'] / median['bare']:.2f}×; {other} {median['extract_other']:.3f} s = {median['extract_other'] / median['bare']:.2f}×)"
        )


def keras_case(args) -> None:
    """Keras ResNet-20 at 32×32: bare ``predict_on_batch`` against the Keras extract path."""
    from layersim.extract.keras import keras_layer_batches
    from layersim.train.keras import nhwc
    from layersim.models.keras import cifar_resnet
    from layersim.jobs import limit_threads

    threads = len(os.sched_getaffinity(0))
    limit_threads(threads)  # as the extract rule keeps TensorFlow to the job's threads

    n_images = 256 if args.quick else 512
    model = cifar_resnet(20, 1, input_shape=(32, 32, 3))
    images = np.random.default_rng(0).standard_normal((n_images, 3, 32, 32), dtype=np.float32)

    def bare():
        for s in range(0, n_images, 128):
            model.predict_on_batch(nhwc(images[s : s + 128]))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "m.zarr"

        def extract(write_threads, overlap=True):  # as extract_keras
            write_activations(path, keras_layer_batches(model, images, 128), sample_id=np.arange(n_images), labels=np.zeros(n_images), attrs={}, shard_chunks=4, write_threads=write_threads, overlap=overlap)

        bare()  # warm-up: traces predict_on_batch's function once
        runs = {"bare": (None, bare), "extract": (path, lambda: extract(threads)), "extract_1": (path, lambda: extract(1)), "turns": (path, lambda: extract(threads, overlap=False))}
        times = rounds(runs, 3 if args.quick else 7)
    best = {name: min(wall for wall, _ in t) for name, t in times.items()}
    median = {name: float(np.median([wall for wall, _ in t])) for name, t in times.items()}
    print(
        f"Keras ResNet-20 ×1, 32×32×3, {n_images} images, TensorFlow on {threads} threads: bare predict_on_batch {best['bare']:.3f} s; "
        f"extract to Zarr {best['extract']:.3f} s = {best['extract'] / best['bare']:.2f}× bare ({threads} write threads, overlapping; with 1: "
        f"{best['extract_1']:.3f} s = {best['extract_1'] / best['bare']:.2f}×; taking turns: {best['turns']:.3f} s = {best['turns'] / best['bare']:.2f}×). "
        f"Medians of {len(times['bare'])} rounds: bare {median['bare']:.3f} s, "
        f"extract {median['extract']:.3f} s = {median['extract'] / median['bare']:.2f}× (with 1 write thread {median['extract_1'] / median['bare']:.2f}×; "
        f"taking turns {median['turns'] / median['bare']:.2f}×)"
    )


def rounds(runs: dict, repeat: int) -> dict[str, list]:
    """``repeat`` rounds of every run ``{name: (output to delete first or None, fn)}``,
    interleaved in a rotating order (none always runs first): ``{name: [(wall, CPU), ...]}``."""
    times: dict[str, list] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            output, fn = runs[name]
            if output is not None:
                shutil.rmtree(output, ignore_errors=True)  # outside the timing
            times[name].append(timed(fn))
    return times


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every thread of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--device", default="cpu", help="torch device of the forward pass (e.g. cuda)")
    parser.add_argument("--dir", default=None, help="where to write the stores (default: the system's temporary directory; use the results/ file system to measure it)")
    parser.add_argument("--keras", action="store_true", help="also a Keras ResNet-20 at 32×32 (imports TensorFlow)")
    args = parser.parse_args()
    main(args)
    if args.keras:
        keras_case(args)
