"""Small real pipeline artefacts for the README and CLI tests: two untrained torch ResNets'
activation stores on the digits eval split (8×8) and their CKA result, written by the same
functions and under the same names as the default run's."""

from pathlib import Path

import numpy as np
import torch

from layersim.data.digits import load_digits
from layersim.engine import compare_stores
from layersim.extract.torch import torch_layer_batches
from layersim.models.torch import CifarResNet
from layersim.store import write_activations, write_similarity

MODELS = {"resnet20x1-s0-e20": (20, 1), "resnet8x2-s0-e20": (8, 2)}
PAIR = ("resnet20x1-s0-e20", "resnet8x2-s0-e20")


def write_small_results(root: Path, experiment: str = "default", n_samples: int = 128) -> Path:
    """Write ``results/<experiment>/{activations,similarity/cka}/`` under ``root`` (the first
    ``n_samples`` of the eval split); returns the results folder."""
    results = Path(root) / "results" / experiment
    split = load_digits(image_size=8).eval
    split = type(split)(split.images[:n_samples], split.labels[:n_samples], split.sample_id[:n_samples])
    stores = {}
    for name, (depth, width) in MODELS.items():
        torch.manual_seed(0)
        model = CifarResNet(depth, width, 10, 1)
        batches = torch_layer_batches(model, split.images, 64, progress=False)
        attrs = {"model": name.split("-")[0], "framework": "torch", "seed": 0, "epoch": 20, "dataset": "digits", "split": "eval"}
        stores[name] = str(write_activations(results / "activations" / f"{name}.zarr", batches, sample_id=split.sample_id, labels=split.labels, attrs=attrs))
    result = compare_stores(stores, [PAIR], batch_size=min(64, n_samples), passes=2, threads=1, progress=False)[PAIR]
    write_similarity(result, results / "similarity" / "cka" / f"{PAIR[0]}__{PAIR[1]}.zarr")
    assert np.isfinite(result["cka"].values).all()
    return results
