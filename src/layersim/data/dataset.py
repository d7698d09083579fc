"""The dataset types (:class:`Dataset`, :class:`Split`) and image resizing, shared by the loaders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layersim.errors import LayersimError


class DatasetError(LayersimError):
    """A dataset could not be loaded or prepared as configured."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset."""

    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64 class labels
    sample_id: np.ndarray  # (N,) int64, the index of each row in the original dataset

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


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize ``(N, C, H, W)`` images to ``(N, C, size, size)`` float32 (torch's
    ``interpolate``, ``align_corners=False``); values stay within the input's range."""
    import torch

    if images.shape[-2:] == (size, size):
        return images.astype(np.float32, copy=False)
    batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    out = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
    return out.numpy()
