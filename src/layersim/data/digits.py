"""scikit-learn's bundled digits: the embedded default dataset (no download).

1,797 real 8×8 grey-scale images of handwritten digits with 17 intensity levels (0–16), divided
by 16 to lie in ``[0, 1]`` and bilinearly resized to ``image_size``.
"""

from __future__ import annotations

import numpy as np

from layersim.data.dataset import Dataset, DatasetError, Split, resize_images


def load_digits(*, eval_fraction: float = 0.3, split_seed: int = 0, image_size: int = 16) -> Dataset:
    """The digits dataset as a stratified train/eval split, ``eval_fraction`` of the 1,797 images
    held out for evaluation (and activation extraction); the same ``split_seed`` always gives the
    same ``sample_id`` s. ``image_size`` is the side of the resized images (8 keeps the native size).

    >>> ds = load_digits(eval_fraction=0.3, split_seed=0, image_size=8)
    >>> len(ds.train) + len(ds.eval), ds.image_shape, ds.num_classes
    (1797, (1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < eval_fraction < 1.0:
        raise DatasetError(f"dataset.eval_fraction must lie in (0, 1), got {eval_fraction}")
    if image_size < 8:
        raise DatasetError(f"dataset.image_size must be at least 8 (the native size), got {image_size}")
    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels), dtype=np.int64)
    parts = train_test_split(index, test_size=eval_fraction, random_state=split_seed, stratify=labels)
    images = resize_images(images, image_size)
    train, held_out = (Split(np.ascontiguousarray(images[i]), labels[i], i) for i in map(np.sort, parts))
    return Dataset("digits", train, held_out, num_classes=10)
