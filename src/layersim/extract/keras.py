"""Extraction of every Keras layer's output into an activation store (same layout as torch;
dimension names and the recorded layers: docs/keras.md, "Extraction")."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from layersim.data import Split
from layersim.errors import LayersimError
from layersim.models.keras import import_keras, layer_names
from layersim.train.keras import nhwc, read_checkpoint_metadata

log = logging.getLogger(__name__)


class ExtractError(LayersimError):
    """A Keras model or checkpoint that cannot be extracted from."""


def load_keras_checkpoint(path: str | os.PathLike):
    """Load a ``.keras`` checkpoint (no compile); returns ``(model, layersim metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"Keras checkpoint {path} does not exist; run the train step first")
    keras = import_keras()
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad file
        raise ExtractError(f"cannot load Keras checkpoint {path}: {type(err).__name__}: {err}") from err
    return model, read_checkpoint_metadata(path)


def keras_layer_batches(model, images: np.ndarray, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{layer: (b, ...) float32}`` for consecutive batches of ``(N, C, H, W)`` images, every
    layer but InputLayers, and the model's output as ``logits`` if no layer has that name (one
    ``tf.function`` in inference mode; float32 outputs are NumPy views of TensorFlow's buffers)."""
    import tensorflow as tf

    names = layer_names(model)
    outputs = [model.get_layer(name).output for name in names]
    if "logits" not in names:
        names.append("logits")
        outputs.append(model.outputs[0])
    features = import_keras().Model(model.inputs, outputs, name=f"{model.name}_features")
    forward = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
    for start in range(0, len(images), batch_size):
        values = forward(nhwc(images[start : start + batch_size]))
        yield {name: np.asarray(out).astype(np.float32, copy=False) for name, out in zip(names, values)}


def dimension_names(model) -> dict[str, tuple[str, ...]]:
    """Feature-dimension names of the recorded layers with image-shaped (channels-last) outputs; the
    store's defaults name the others (``feature``, and ``class`` for ``logits``)."""
    return {name: ("height", "width", "channel") for name in layer_names(model)
            if len(model.get_layer(name).output.shape) == 4}


def extract_keras(
    model_path: str | os.PathLike,
    dataset_split: Split,
    out_path: str | os.PathLike,
    batch_size: int = 128,
    attrs: dict | None = None,
    *,
    shard_chunks: int = 4,
    write_threads: int = 1,
    dtype: str = "float32",
) -> Path:
    """Write every layer's output of a trained Keras model over a split to a Zarr store.

    ``model_path`` is a ``.keras`` checkpoint (:func:`layersim.train.keras.train_keras`); rows keep
    the order of ``dataset_split.sample_id``; ``batch_size`` is also the chunk length along ``sample``.
    ``attrs`` (provenance) is stored with ``framework`` and the checkpoint's ``arch``, ``seed``,
    ``epoch``, ``strategy`` and ``policy``, which it overrides. ``shard_chunks``, ``write_threads``
    and ``dtype`` are as for :func:`layersim.store.write_activations`.
    """
    from layersim.store import write_activations

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ExtractError(f"extraction batch_size must be a positive integer, got {batch_size!r}")
    model, meta = load_keras_checkpoint(model_path)
    expected = tuple(model.inputs[0].shape[1:])
    c, h, w = dataset_split.images.shape[1:]
    if expected != (h, w, c):
        raise ExtractError(
            f"model {model_path} expects inputs of shape (height, width, channels) = {expected}, "
            f"but the split's images are {(h, w, c)}; use the dataset (and image_size) it was trained on"
        )
    from_checkpoint = ("arch", "seed", "epoch", "strategy", "policy")
    provenance = {"framework": "keras", **{k: meta[k] for k in from_checkpoint if k in meta}}
    path = write_activations(
        out_path,
        keras_layer_batches(model, dataset_split.images, batch_size),
        sample_id=dataset_split.sample_id,
        labels=dataset_split.labels,
        attrs={**provenance, **(attrs or {})},
        dimension_names=dimension_names(model),
        shard_chunks=shard_chunks,
        write_threads=write_threads,
        overlap=True,  # TensorFlow's pool loses little to the write threads (see write_activations)
        dtype=dtype,
    )
    log.info("wrote %s", path)
    return path
