"""Extraction of every layer's output over a dataset split into an activation store."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from layersim.data import Split
from layersim.store import write_activations


def torch_layer_batches(model, images: np.ndarray, batch_size: int, layers: list[str] | None = None, progress: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{layer: (b, ...) float32}`` for consecutive batches of ``images`` (eval mode)."""
    import torch
    from tqdm.auto import tqdm

    from layersim.models.torch import LayerRecorder, layer_names

    names = layers or layer_names(model)
    model.eval()
    with LayerRecorder(model, names) as recorder, torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc="extract", disable=not progress, mininterval=2.0):
            model(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])))
            yield {name: out.numpy() for name, out in recorder.take().items()}


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
) -> None:
    """Write every layer's output of a trained torch model over ``split`` to a Zarr store.

    Layers are those of :func:`layersim.models.torch.layer_names` (``logits`` last), or only
    those matching the regex ``layers`` (``re.search``; ``logits`` is always kept); rows keep
    the order of ``split.sample_id``. Memory holds at most two shards of rows (one being written).
    """
    import re

    import torch

    from layersim.errors import LayersimError
    from layersim.models.torch import layer_names
    from layersim.train import load_torch_checkpoint

    torch.set_num_threads(max(1, threads))
    model, state = load_torch_checkpoint(checkpoint)
    names = None
    if layers is not None:
        names = [n for n in layer_names(model) if re.search(layers, n) and n != "logits"]
        if not names:
            raise LayersimError(f"extract.layers {layers!r} matches no layer of {state['arch']}; its layers: {', '.join(layer_names(model))}")
        names.append("logits")
    provenance = {"framework": "torch", "arch": state["arch"], "seed": state["seed"], "epoch": state["epoch"]}
    write_activations(
        out_path,
        torch_layer_batches(model, split.images, batch_size, layers=names, progress=progress),
        sample_id=split.sample_id,
        labels=split.labels,
        attrs={**provenance, **(attrs or {})},
        shard_chunks=shard_chunks,
    )
