"""Datasets as plain arrays: the embedded default (scikit-learn's digits) and CIFAR.

Every dataset comes as a :class:`Dataset` with a ``train`` and an ``eval`` :class:`Split`.
Images are float32, channels first ``(N, C, H, W)``, scaled to ``[0, 1]``; ``sample_id`` holds
each row's index in the original dataset, so that activation stores built from the same split
can be checked for comparability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError


class DatasetError(LayersimError):
    """A dataset could not be loaded or prepared as configured."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes
    ----------
    images : np.ndarray
        ``(N, C, H, W)`` float32 in ``[0, 1]``.
    labels : np.ndarray
        ``(N,)`` int64 class labels.
    sample_id : np.ndarray
        ``(N,)`` int64, the index of each row in the original dataset.
    """

    images: np.ndarray
    labels: np.ndarray
    sample_id: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """A named dataset with a training and an evaluation split."""

    name: str
    train: Split
    eval: Split
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train.images.shape[1:])


def load_dataset(cfg: dict) -> Dataset:
    """Load the dataset a ``dataset:`` config section describes.

    Parameters
    ----------
    cfg : dict
        ``{"name": "digits" | "cifar10" | "cifar100", ...}``; the other keys are those of
        :func:`layersim.data.digits.load_digits` or :func:`layersim.data.cifar.load_cifar`.
    """
    name = cfg.get("name", "digits")
    if name == "digits":
        from layersim.data.digits import load_digits

        return load_digits(
            eval_fraction=cfg.get("eval_fraction", 0.3),
            split_seed=cfg.get("split_seed", 0),
            image_size=cfg.get("image_size", 16),
        )
    if name in ("cifar10", "cifar100"):
        from layersim.data.cifar import load_cifar

        if not cfg.get("path"):
            raise DatasetError(
                f"dataset '{name}' needs 'dataset.path': the directory holding the "
                f"standard {name} archive (see README, 'CIFAR data')"
            )
        kwargs = {k: cfg[k] for k in ("fmt", "label_mode", "sha256", "max_train", "max_eval") if cfg.get(k) is not None}
        dataset = load_cifar(cfg["path"], variant=name, **kwargs)
        size = cfg.get("image_size")
        if size and size != dataset.image_shape[-1]:
            dataset = Dataset(
                dataset.name,
                resize_split(dataset.train, size),
                resize_split(dataset.eval, size),
                dataset.num_classes,
            )
        return dataset
    raise DatasetError(f"unknown dataset name {name!r}: expected one of 'digits', 'cifar10', 'cifar100'")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize ``(N, C, H, W)`` images to ``(N, C, size, size)`` (float32).

    Uses torch's ``interpolate`` with ``align_corners=False`` (the convention of most image
    libraries); values stay within the input's range.
    """
    import torch

    if images.shape[-1] == size and images.shape[-2] == size:
        return images.astype(np.float32, copy=False)
    with torch.no_grad():
        out = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
        )
    return out.numpy()


def resize_split(split: Split, size: int) -> Split:
    """The same split with images resized to ``size × size``."""
    return Split(resize_images(split.images, size), split.labels, split.sample_id)


__all__ = ["Dataset", "DatasetError", "Split", "load_dataset", "resize_images", "resize_split"]
