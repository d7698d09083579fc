"""Notebook use: the CKA matrix of two torch models, without the workflow.

>>> import torch
>>> from layersim.models.torch import CifarResNet
>>> torch.manual_seed(0) and None
>>> a, b = CifarResNet(8, 1, 10, 1), CifarResNet(8, 2, 10, 1)
>>> images = torch.rand(64, 1, 8, 8)
>>> cka = compare_models(a, b, images, batch_size=32, passes=2, progress=False)
>>> cka.dims, cka.shape
(('layer_a', 'layer_b'), (23, 23))

:func:`layersim.plots.heatmap` draws it as the pipeline's heatmap rule does.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np
import torch

from layersim.engine import MIN_BATCH, EstimatorError, MinibatchCKA, minibatch_rows


def _check_schedule(batch_size, passes) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < MIN_BATCH:
        raise EstimatorError(f"compare_models: batch_size must be an integer ≥ {MIN_BATCH} (the unbiased HSIC estimator needs {MIN_BATCH} samples a batch), got {batch_size!r}; the default is 256")
    if isinstance(passes, bool) or not isinstance(passes, numbers.Integral) or passes < 1:
        raise EstimatorError(f"compare_models: passes must be an integer ≥ 1, got {passes!r}; the default is 10")


def _batches(data, batch_size: int, passes: int):
    """The minibatches of inputs from an array/tensor (seeded permutations) or a DataLoader (or any
    re-iterable of batches), and their number (``None`` if unknown)."""
    if isinstance(data, (np.ndarray, torch.Tensor)):
        tensor = torch.as_tensor(data)
        batches = minibatch_rows(len(tensor), batch_size, passes)
        return (tensor[torch.from_numpy(rows)] for rows in batches), len(batches)
    inputs = (batch[0] if isinstance(batch, (tuple, list)) else batch
              for _ in range(passes) for batch in data)
    return inputs, len(data) * passes if hasattr(data, "__len__") else None


def _model_input(inputs, model, device):
    """A batch of images as the model's floating dtype on ``device``: uint8 images are scaled
    to [0, 1] (as torchvision's ``ToTensor``), other floats are cast; anything else is refused."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    inputs = torch.as_tensor(inputs)
    if inputs.dtype == torch.uint8:
        return inputs.to(device=device, dtype=dtype) / 255
    if not inputs.is_floating_point():
        raise EstimatorError(f"compare_models: images of dtype {inputs.dtype} cannot be model inputs; pass floating-point images (e.g. scaled to [0, 1]) or uint8 images (scaled by 1/255 here)")
    return inputs.to(device=device, dtype=dtype)


def _device_of(model):
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextlib.contextmanager
def _borrowed(models, device):
    """Each model in eval mode on ``device`` for the duration; every module's train/eval mode
    and each model's device are restored afterwards (also after an error)."""
    saved = [({m: m.training for m in model.modules()}, _device_of(model)) for model in models]
    try:
        for model in models:
            model.eval()
            if _device_of(model) != device:
                model.to(device)
        yield
    finally:
        for model, (modes, original) in zip(models, saved):
            if _device_of(model) != original:
                model.to(original)
            for module, training in modes.items():
                module.training = training


def compare_models(
    model_a,
    model_b,
    data,
    *,
    layers_a: list[str] | None = None,
    layers_b: list[str] | None = None,
    batch_size: int = 256,
    passes: int = 10,
    dtype=np.float32,
    device=None,
    names: tuple[str, str] | None = None,
    progress: bool = True,
):
    """Minibatch linear CKA between every layer of two torch models.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Run in eval mode; each module's train/eval mode (and each model's device) is restored
        afterwards. Forward hooks record the layers.
    data : array, tensor or DataLoader
        Model inputs ``(N, ...)``: batches of ``batch_size`` from ``passes`` seeded
        permutations (remainder dropped); or a DataLoader, iterated ``passes`` times as it is
        (its own batch size and shuffling; ``(inputs, labels)`` batches are fine; a batch of
        fewer than 4 samples, e.g. a short last one, is skipped with a warning). Floating-point
        images are cast to the model's dtype; uint8 images are scaled to [0, 1].
    layers_a, layers_b : list of str, optional
        Module names to compare (default: :func:`layersim.models.torch.layer_names`).
    batch_size, passes : int
        The minibatch schedule of Nguyen et al. (2021): 256 and 10.
    dtype : numpy dtype
        Precision of the Grams (float32; float64 on request). HSIC sums are float64.
    device : str or torch.device, optional
        Where the forward passes and Grams run (default: the device of ``model_a``'s
        parameters). A model elsewhere is moved there for the comparison and back afterwards.
    names : (str, str), optional
        The models' names in the result's attrs and the heatmap title (default: class names).
    progress : bool
        Show a progress bar (tqdm) over the minibatches.

    Returns
    -------
    xarray.DataArray
        ``(layer_a, layer_b)`` CKA with layer-name coordinates; undefined layers are NaN
        (with an :class:`~layersim.engine.UndefinedLayerWarning`).
    """
    import xarray as xr
    from tqdm.auto import tqdm

    from layersim.models.torch import LayerRecorder, layer_names

    _check_schedule(batch_size, passes)
    layers_a = layers_a or layer_names(model_a)
    layers_b = layers_b or layer_names(model_b)
    names = names or (type(model_a).__name__, type(model_b).__name__)
    device = torch.device(device) if device is not None else _device_of(model_a)
    acc = MinibatchCKA(dtype, layer_names_a=layers_a, layer_names_b=layers_b)
    batches, total = _batches(data, batch_size, passes)
    skipped = n_samples = 0
    bar = tqdm(batches, total=total, desc="CKA", unit="batch", disable=not progress)
    with _borrowed([model_a, model_b], device), LayerRecorder(model_a, layers_a) as rec_a, LayerRecorder(model_b, layers_b) as rec_b, torch.no_grad():
        for inputs in bar:
            if len(inputs) < MIN_BATCH:
                skipped += len(inputs)
                continue
            model_a(_model_input(inputs, model_a, device))
            model_b(_model_input(inputs, model_b, device))
            acc.update(list(rec_a.take().values()), list(rec_b.take().values()))
            n_samples += len(inputs)
    bar.close()
    if skipped:
        warnings.warn(f"compare_models skipped {skipped} samples in batches of fewer than {MIN_BATCH} (e.g. a DataLoader's short last batch); drop_last=True avoids them", UserWarning, stacklevel=2)
    return xr.DataArray(
        acc.compute(),
        dims=("layer_a", "layer_b"),
        coords={"layer_a": layers_a, "layer_b": layers_b},
        name="cka",
        attrs={"metric": "minibatch_linear_cka", "model_a": names[0], "model_b": names[1], "n_batches": acc.n_batches, "samples_seen": n_samples},
    )
