"""Extraction of every layer's output over a dataset split into an activation store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from layersim.data import Split
from layersim.device import torch_device
from layersim.layers import select_layers
from layersim.models.torch import LayerRecorder, layer_names
from layersim.parallel import torch_threads
from layersim.store import write_activations
from layersim.train.torch import load_torch_checkpoint


def torch_layer_batches(model, images: np.ndarray, batch_size: int, layers: list[str] | None = None, progress: bool = True, device: str = "cpu") -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{layer: (b, ...) float32}`` (host arrays) for consecutive batches of ``images``
    (eval mode), the forward pass on the torch ``device`` (the model is moved there)."""
    names = layers or layer_names(model)
    model.eval().to(device)
    with LayerRecorder(model, names) as recorder, torch.no_grad(), _full_float32():
        for start in tqdm(range(0, len(images), batch_size), desc="extract", disable=not progress, mininterval=2.0):
            model(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device))
            yield {name: out.cpu().numpy() for name, out in recorder.take().items()}


@contextlib.contextmanager
def _full_float32():
    """No TensorFloat-32 in convolutions and matmuls (cuDNN's default for convolutions): the
    stored activations are float32 results on every device, not 10-bit-mantissa ones."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def overlap_writes(device: str, threads: int) -> bool:
    """Whether a torch extraction's writes overlap the next batch's forward pass
    (``write_activations(overlap=…)``): on a GPU, and on the CPU with up to 2 threads (why:
    docs/performance.md)."""
    return device != "cpu" or threads <= 2


def extract_torch(
    checkpoint: str | os.PathLike,
    split: Split,
    out_path: str | os.PathLike,
    *,
    batch_size: int = 128,
    shard_chunks: int = 4,
    attrs: dict | None = None,
    threads: int = 1,
    progress: bool = True,
    layers: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> None:
    """Write every layer's output of a trained torch model over ``split`` to a Zarr store.

    Layers are those of :func:`layersim.models.torch.layer_names` (``logits`` last), or only
    those matching the regex ``layers`` (``re.search``; ``logits`` is always kept); rows keep
    the order of ``split.sample_id``. Each batch is written by ``threads`` threads, while the next
    is computed or before it (:func:`overlap_writes`). The forward pass runs on the torch
    ``device`` (``auto``: the GPU if the job sees one). ``dtype``: how the layers are stored
    (:func:`layersim.store.write_activations`).
    """
    device = torch_device(device)
    model, state = load_torch_checkpoint(checkpoint)
    names = None
    if layers is not None:
        names = select_layers(layer_names(model), layers, what="extract.layers pattern") + ["logits"]
    provenance = {"framework": "torch", "arch": state["arch"], "seed": state["seed"], "epoch": state["epoch"], "device": device}
    with torch_threads(threads):  # the forward passes
        write_activations(
            out_path,
            torch_layer_batches(model, split.images, batch_size, layers=names, progress=progress, device=device),
            sample_id=split.sample_id,
            labels=split.labels,
            attrs={**provenance, **(attrs or {})},
            shard_chunks=shard_chunks,
            write_threads=max(1, threads),
            overlap=overlap_writes(device, threads),
            dtype=dtype,
        )
