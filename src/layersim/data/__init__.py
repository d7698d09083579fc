"""Datasets as plain arrays (:class:`Dataset`, :class:`Split`): the embedded default (scikit-learn's
digits) and CIFAR."""

from __future__ import annotations

from layersim.data.cifar import load_cifar
from layersim.data.dataset import Dataset, DatasetError, Split, resize_images
from layersim.data.digits import load_digits


def load_dataset(cfg: dict) -> Dataset:
    """Load the dataset a ``dataset:`` config section describes: ``{"name": "digits" | "cifar10" |
    "cifar100", ...}``, the other keys those of :func:`layersim.data.digits.load_digits` or
    :func:`layersim.data.cifar.load_cifar`."""
    name = cfg.get("name", "digits")
    if name == "digits":
        return load_digits(**{k: cfg[k] for k in ("eval_fraction", "split_seed", "image_size") if k in cfg})
    if name in ("cifar10", "cifar100"):
        if not cfg.get("path"):
            raise DatasetError(
                f"dataset '{name}' needs 'dataset.path': the directory holding the "
                f"standard {name} archive (see README, 'CIFAR data')"
            )
        keys = ("fmt", "label_mode", "sha256", "max_train", "max_eval", "max_member_mb", "max_extracted_mb",
                "image_size")
        return load_cifar(cfg["path"], variant=name, **{k: cfg[k] for k in keys if cfg.get(k) is not None})
    raise DatasetError(f"unknown dataset name {name!r}: expected one of 'digits', 'cifar10', 'cifar100'")


__all__ = ["Dataset", "DatasetError", "Split", "load_dataset", "resize_images"]
