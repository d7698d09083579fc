"""Extraction throughput: the extract rule's path (torch_layer_batches + write_activations to
Zarr) against the bare forward pass of the same CifarResNet on the same images, and against
the floor of writing the same bytes to plain files (one per layer) during the same forward pass.

    .venv/bin/python benchmarks/bench_extract.py [--quick] [--dir D] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of  # noqa: E402

from layersim.extract import torch_layer_batches  # noqa: E402
from layersim.models.torch import CifarResNet  # noqa: E402
from layersim.store import write_activations  # noqa: E402


def main(args) -> None:
    quick, device = args.quick, args.device
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    repeat = 2 if quick else 3
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

            def extract():
                write_activations(path, torch_layer_batches(model, images, 128, progress=False, device=device), sample_id=np.arange(n_images), labels=np.zeros(n_images), attrs={}, shard_chunks=4)

            raw_dir = Path(tmp) / "raw"

            def forward_and_raw_write():
                """The floor: the same forward pass and recording, each layer's bytes written
                to a plain file per layer (no Zarr, no buffering)."""
                raw_dir.mkdir()
                files = {}
                try:
                    for batch in torch_layer_batches(model, images, 128, progress=False, device=device):
                        for name, value in batch.items():
                            if name not in files:
                                files[name] = open(raw_dir / name, "wb")
                            files[name].write(np.ascontiguousarray(value).data)
                finally:
                    for f in files.values():
                        f.close()

            bare()  # warm-up (cuDNN's algorithm choice on a GPU)
            t_bare, t_extract, t_raw = [], [], []
            for _ in range(repeat):  # interleaved; previous outputs are deleted outside the timing
                t_bare.append(best_of(bare, 1))
                shutil.rmtree(path, ignore_errors=True)
                t_extract.append(best_of(extract, 1))
                shutil.rmtree(raw_dir, ignore_errors=True)
                t_raw.append(best_of(forward_and_raw_write, 1))
            mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        bare_s, extract_s, raw_s = min(t_bare), min(t_extract), min(t_raw)
        print(
            f"ResNet-20 ×1, {label}, {n_images} images ({mib:.0f} MiB of activations, {mib / bare_s:.0f} MiB/s at the bare forward's rate): "
            f"bare forward {bare_s:.3f} s; forward + plain file writes {raw_s:.3f} s = {raw_s / bare_s:.2f}× (the floor); "
            f"extract to Zarr {extract_s:.3f} s = {extract_s / bare_s:.2f}× bare, {extract_s / raw_s:.2f}× the floor"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--device", default="cpu", help="torch device of the forward pass (e.g. cuda)")
    parser.add_argument("--dir", default=None, help="where to write the stores (default: the system's temporary directory; use the results/ file system to measure it)")
    main(parser.parse_args())
