"""The embedded default dataset (scikit-learn's digits)."""

import numpy as np
import pytest

from layersim.data import DatasetError, load_dataset, resize_images


def test_digits_split_is_seeded_stratified_and_complete():
    ds = load_dataset({"name": "digits", "eval_fraction": 0.3, "split_seed": 0, "image_size": 8})
    again = load_dataset({"name": "digits", "eval_fraction": 0.3, "split_seed": 0, "image_size": 8})
    other = load_dataset({"name": "digits", "eval_fraction": 0.3, "split_seed": 1, "image_size": 8})
    np.testing.assert_array_equal(ds.eval.sample_id, again.eval.sample_id)
    assert not np.array_equal(ds.eval.sample_id, other.eval.sample_id)
    all_ids = np.concatenate([ds.train.sample_id, ds.eval.sample_id])
    assert sorted(all_ids.tolist()) == list(range(1797))
    assert len(ds.eval) == 540
    from sklearn.datasets import load_digits

    class_share = np.bincount(load_digits().target) * 0.3  # stratified: each class keeps its share
    assert np.all(np.abs(np.bincount(ds.eval.labels) - class_share) <= 1)
    assert ds.train.images.dtype == np.float32 and ds.train.images.min() >= 0 and ds.train.images.max() == 1.0


def test_digits_pixels_match_sklearn():
    from sklearn.datasets import load_digits

    ds = load_dataset({"name": "digits", "image_size": 8})
    raw = load_digits()
    i = 5
    np.testing.assert_allclose(ds.eval.images[i, 0], raw.images[ds.eval.sample_id[i]] / 16.0)
    assert ds.eval.labels[i] == raw.target[ds.eval.sample_id[i]]


def test_resize_keeps_range_and_shape():
    images = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    big = resize_images(images, 16)
    assert big.shape == (3, 1, 16, 16)
    assert big.min() >= images.min() - 1e-6 and big.max() <= images.max() + 1e-6
    assert np.allclose(big.mean(), images.mean(), atol=0.02)


@pytest.mark.parametrize("cfg,match", [({"name": "mnist"}, "unknown dataset name 'mnist'"), ({"name": "digits", "eval_fraction": 1.5}, "eval_fraction"), ({"name": "cifar10"}, "needs 'dataset.path'")])
def test_bad_dataset_config(cfg, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(cfg)
