"""Notebook use: the CKA matrix of two torch models, without the workflow.

>>> import torch
>>> from layersim.models.torch import CifarResNet
>>> torch.manual_seed(0) and None
>>> a, b = CifarResNet(8, 1, 10, 1), CifarResNet(8, 2, 10, 1)
>>> images = torch.rand(64, 1, 8, 8)
>>> cka = compare_models(a, b, images, batch_size=32, passes=2, progress=False)
>>> cka.dims, cka.shape
(('layer_a', 'layer_b'), (23, 23))
"""

from __future__ import annotations

import numpy as np

from layersim.engine import MinibatchCKA, minibatch_rows


def _batches(data, batch_size: int, passes: int):
    """Minibatches of inputs from an array/tensor (seeded permutations) or a DataLoader."""
    import torch

    if isinstance(data, (np.ndarray, torch.Tensor)):
        tensor = torch.as_tensor(data)
        for rows in minibatch_rows(len(tensor), batch_size, passes):
            yield tensor[torch.from_numpy(rows)]
        return
    for _ in range(passes):  # a DataLoader (or any re-iterable of batches)
        for batch in data:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch


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
    progress: bool = True,
):
    """Minibatch linear CKA between every layer of two torch models.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Put in eval mode; their forward hooks record the layers.
    data : array, tensor or DataLoader
        Model inputs ``(N, ...)``: batches of ``batch_size`` from ``passes`` seeded
        permutations (remainder dropped); or a DataLoader, iterated ``passes`` times as it is
        (its own batch size and shuffling; ``(inputs, labels)`` batches are fine).
    layers_a, layers_b : list of str, optional
        Module names to compare (default: :func:`layersim.models.torch.layer_names`).
    batch_size, passes : int
        The minibatch schedule of Nguyen et al. (2021): 256 and 10.

    Returns
    -------
    xarray.DataArray
        ``(layer_a, layer_b)`` CKA with layer-name coordinates; undefined layers are NaN
        (with an :class:`~layersim.engine.UndefinedLayerWarning`).
    """
    import torch
    import xarray as xr
    from tqdm.auto import tqdm

    from layersim.models.torch import LayerRecorder, layer_names

    layers_a = layers_a or layer_names(model_a)
    layers_b = layers_b or layer_names(model_b)
    acc = MinibatchCKA(dtype, layer_names_a=layers_a, layer_names_b=layers_b)
    total = None
    if isinstance(data, (np.ndarray, torch.Tensor)):
        total = (len(data) // batch_size) * passes
    model_a.eval(), model_b.eval()
    with LayerRecorder(model_a, layers_a) as rec_a, LayerRecorder(model_b, layers_b) as rec_b, torch.no_grad():
        for inputs in tqdm(_batches(data, batch_size, passes), total=total, desc="CKA", disable=not progress):
            model_a(inputs)
            model_b(inputs)
            acc.update(list(rec_a.take().values()), list(rec_b.take().values()))
    return xr.DataArray(acc.compute(), dims=("layer_a", "layer_b"), coords={"layer_a": layers_a, "layer_b": layers_b}, name="cka", attrs={"n_batches": acc.n_batches})
