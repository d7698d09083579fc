"""Issue 9 item 4: representation sets told apart by an SVM, and their t-SNE (thesis §3.1).

Unit tests of the pure functions against hand computations, then the reduced config run end to
end by Snakemake, its outputs checked against an independent recomputation from the stores."""

import json

import numpy as np
import pytest
import yaml
from workflow_runner import REPO, planned_jobs, run_experiment, run_snakemake

from layersim.data import DatasetError
from layersim.experiments import representation_sets as rs
from layersim.io import read_csv

REDUCED = REPO / "config" / "experiments" / "representation_sets_reduced.yaml"
FULL = REPO / "config" / "experiments" / "representation_sets.yaml"
slow = pytest.mark.slow  # runs Snakemake


# --- pure functions ---------------------------------------------------------------------------


def test_transforms_by_hand():
    x = np.array([[[[0.0, 0.25, 0.5], [0.75, 1.0, 0.125]]]], np.float32)  # (1, 1, 2, 3)
    assert rs.transform_images(x, "none").tolist() == x.tolist()
    assert rs.transform_images(x, "invert")[0, 0].tolist() == [[1.0, 0.75, 0.5], [0.25, 0.0, 0.875]]
    assert rs.transform_images(x, "transpose")[0, 0].tolist() == [[0.0, 0.75], [0.25, 1.0], [0.5, 0.125]]
    # a quarter turn anticlockwise: the last column becomes the first row
    assert rs.transform_images(x, "rotate90")[0, 0].tolist() == [[0.5, 0.125], [0.25, 1.0], [0.0, 0.75]]
    assert rs.transform_images(x, "hflip")[0, 0].tolist() == [[0.5, 0.25, 0.0], [0.125, 1.0, 0.75]]
    with pytest.raises(DatasetError, match="unknown dataset transform 'blur'"):
        rs.transform_images(x, "blur")


def test_load_set_dataset_transform_and_channels():
    source = {"name": "digits", "eval_fraction": 0.3, "split_seed": 0, "image_size": 8}
    plain = rs.load_set_dataset({"source": source})
    inverted = rs.load_set_dataset({"source": source, "transform": "invert", "channels": 3})
    assert inverted.image_shape == (3, 8, 8) and inverted.name == "digits[invert]"
    np.testing.assert_array_equal(inverted.eval.sample_id, plain.eval.sample_id)
    for c in range(3):
        np.testing.assert_allclose(inverted.eval.images[:, c], 1.0 - plain.eval.images[:, 0])
    with pytest.raises(DatasetError, match="only 1-channel"):
        rs._channels(np.zeros((2, 3, 4, 4), np.float32), 1, "here")


def test_sample_rows_and_layer():
    rows = rs.sample_rows(540, 200, 0)
    assert len(rows) == 200 and len(set(rows)) == 200 and (np.diff(rows) > 0).all() and rows.max() < 540
    np.testing.assert_array_equal(rows, rs.sample_rows(540, 200, 0))
    assert rs.sample_rows(5, None, 0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(rs.RepresentationSetError, match="only 540"):
        rs.sample_rows(540, 600, 0)
    layers = ["stem.conv", "stage3.block2.relu2", "pool", "logits"]
    assert rs.feature_layer(layers, "last_block") == "stage3.block2.relu2"
    assert rs.feature_layer(layers, "pool") == "pool"
    with pytest.raises(rs.RepresentationSetError, match="not a layer"):
        rs.feature_layer(layers, "stage9")


def test_build_set_matrix_checks():
    a = {"label": "a", "features": np.ones((3, 2, 2))}
    b = {"label": "b", "features": np.zeros((2, 4))}
    X, y, labels = rs.build_set_matrix([a, b])
    assert X.shape == (5, 4) and y.tolist() == [0, 0, 0, 1, 1] and labels == ["a", "b"]
    with pytest.raises(rs.RepresentationSetError, match="different feature sizes"):
        rs.build_set_matrix([a, {"label": "c", "features": np.zeros((2, 5))}])
    with pytest.raises(rs.RepresentationSetError, match="non-finite.*'c'"):
        rs.build_set_matrix([a, {"label": "c", "features": np.full((2, 4), np.nan)}])
    with pytest.raises(rs.RepresentationSetError, match="at least 2"):
        rs.build_set_matrix([a])


def test_classify_separable_sets():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 10)) * 10
    X = np.concatenate([c + rng.normal(size=(40, 10)) for c in centres])
    y = np.repeat(np.arange(3), 40)
    out = rs.classify_sets(X, y, test_fraction=0.25, C=1.0, max_iter=5000, seed=0)
    assert out["accuracy"] == 1.0 and out["converged"]
    np.testing.assert_array_equal(out["confusion"], np.diag([10, 10, 10]))  # stratified: 40 × 0.25 per set


def test_confusion_summary_by_hand():
    parts = [{"label": f"{t}_{d}_s0", "trained_on": t, "tested_on": d, "seed": 0} for t in ("a", "b") for d in ("x", "y")]
    # rows a_x, a_y, b_x, b_y; a_x → a_y is a test-dataset confusion, b_y → a_y a model confusion
    confusion = np.array([[8, 2, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0], [0, 5, 0, 5]])
    summary, rows = rs.confusion_summary(confusion, parts)
    assert summary["accuracy"] == pytest.approx(33 / 40)
    assert summary["same_model"] == pytest.approx(35 / 40) and summary["same_test_dataset"] == pytest.approx(38 / 40)
    assert summary["errors"] == 7 and summary["errors_test_dataset_only"] == 2 and summary["errors_model"] == 5
    assert [r["recall"] for r in rows] == pytest.approx([0.8, 1.0, 1.0, 0.5])
    assert rows[3]["same_model"] == pytest.approx(0.5) and rows[3]["same_test_dataset"] == pytest.approx(1.0)
    assert summary["min_recall"] == 0.5 and summary["max_recall"] == 1.0


# --- workflow ------------------------------------------------------------------------------------


@slow
def test_full_dag_is_listed(tmp_path):
    jobs = planned_jobs(tmp_path, FULL)
    # 2 datasets × 2 seeds + 2 untrained = 6 models; × 3 test datasets = 18 sets
    assert jobs["representation_train"] == 6 and jobs["representation_extract"] == 18
    assert jobs["representation_svm"] == 1 and jobs["representation_tsne"] == 1


@slow
def test_default_dag_has_no_representation_jobs(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "config.yaml")
    assert not any(rule.startswith("representation_") for rule in jobs)


@slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["train_on"].append("svhn"), "'svhn' is not under its datasets"),
        (lambda c: c.update(model="nope"), "'nope' is not a model under models:"),
        (lambda c: c["datasets"].update(untrained={"source": {"name": "digits"}}), "'untrained' is not allowed"),
        (lambda c: c["datasets"]["digits"].update(colour="red"), "colour"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, change, message):
    config = yaml.safe_load(REDUCED.read_text())
    change(config["papers"]["representation_sets"])
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    return run_experiment(tmp_path_factory, "representation_sets_reduced")


def _cfg():
    return yaml.safe_load(REDUCED.read_text())["papers"]["representation_sets"]


def _expected_sets():
    cfg = _cfg()
    return [(t, s, d) for t in cfg["train_on"] + ["untrained"] for s in (0, 1) for d in cfg["test_on"]]


def _read_store(path):
    """The features and sample ids of a store, read with zarr directly (not layersim.store)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    layer = group.attrs["feature_layer"]
    features = group[layer][:]
    return features.reshape(len(features), -1).astype(np.float64), group["sample_id"][:], dict(group.attrs)


@slow
def test_reduced_svm_matches_an_independent_recomputation(reduced):
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    cfg = _cfg()
    sets = _expected_sets()
    labels = [f"{t}_{d}_s{s}" for t, s, d in sets]
    blocks = [_read_store(reduced / "representation_sets" / "activations" / f"{t}-s{s}__{d}.zarr") for t, s, d in sets]
    for (t, s, d), (features, _, attrs) in zip(sets, blocks):
        assert attrs["set"] == f"{t}_{d}_s{s}" and attrs["feature_layer"] == "stage3.block1.relu2"
        assert features.shape == (cfg["samples_per_set"], 64 * 2 * 2)
    X = np.concatenate([b[0] for b in blocks])
    y = np.repeat(np.arange(len(sets)), cfg["samples_per_set"])
    train, test = train_test_split(np.arange(len(y)), test_size=cfg["test_fraction"], random_state=cfg["seed"], stratify=y)
    scaler = StandardScaler().fit(X[train])
    svm = LinearSVC(C=cfg["svm_C"], max_iter=cfg["svm_max_iter"], dual=True, random_state=cfg["seed"]).fit(scaler.transform(X[train]), y[train])
    predicted = svm.predict(scaler.transform(X[test]))
    expected = confusion_matrix(y[test], predicted, labels=np.arange(len(sets)))

    rows = read_csv(reduced / "representation_sets" / "confusion.csv")
    assert [r["true_set"] for r in rows] == labels and list(rows[0])[1:] == labels
    confusion = np.array([[r[label] for label in labels] for r in rows])
    np.testing.assert_array_equal(confusion, expected)
    # every row sums to the set's test count: 200 × 0.3 = 60 (stratified), 1,080 in all
    test_counts = np.bincount(y[test], minlength=len(sets))
    np.testing.assert_array_equal(confusion.sum(axis=1), test_counts)
    assert (test_counts == 60).all()

    summary = read_csv(reduced / "representation_sets" / "summary.csv")[0]
    assert summary["n_test"] == 1080 and summary["n_sets"] == 18 and summary["features"] == 256
    assert summary["accuracy"] == pytest.approx((predicted == y[test]).mean(), abs=1e-6)
    # the share predicted as a set of the right model (trained_on, seed), counted from labels
    model_of = [(t, s) for t, s, _ in sets]
    right_model = np.mean([model_of[p] == model_of[t] for p, t in zip(predicted, y[test])])
    right_test = np.mean([sets[p][2] == sets[t][2] for p, t in zip(predicted, y[test])])
    assert summary["same_model"] == pytest.approx(right_model, abs=1e-6) and summary["same_test_dataset"] == pytest.approx(right_test, abs=1e-6)
    per_set = read_csv(reduced / "representation_sets" / "per_set.csv")
    assert [r["n_test"] for r in per_set] == test_counts.tolist()
    # 18 sets: chance is 1/18; the representations are told apart far better than that
    assert summary["accuracy"] > 0.8


@slow
def test_reduced_stores_hold_the_models_features_on_transformed_images(reduced):
    import torch

    from layersim.data import load_dataset
    from layersim.models.torch import LayerRecorder
    from layersim.train.torch import load_torch_checkpoint

    cfg = _cfg()
    acts = reduced / "representation_sets" / "activations"
    ids = {d: _read_store(acts / f"digits-s0__{d}.zarr")[1] for d in cfg["test_on"]}
    # the same sampled evaluation images for every model and every test dataset
    for t, s, d in _expected_sets():
        np.testing.assert_array_equal(_read_store(acts / f"{t}-s{s}__{d}.zarr")[1], ids[d])
    # recompute one set: model trained on inverted digits (seed 1) on transposed digits
    features, sample_id, _ = _read_store(acts / "inverted-s1__transposed.zarr")
    digits = load_dataset({"name": "digits", "eval_fraction": 0.3, "split_seed": 0, "image_size": 8})
    position = {int(i): k for k, i in enumerate(digits.eval.sample_id)}
    images = digits.eval.images[[position[int(i)] for i in sample_id]]
    images = np.ascontiguousarray(images.transpose(0, 1, 3, 2))  # transposed digits, by hand
    model, state = load_torch_checkpoint(reduced / "representation_sets" / "models" / "inverted-s1.pt")
    assert state["seed"] == 1 and state["epoch"] == 6
    with LayerRecorder(model, ["stage3.block1.relu2"]) as rec, torch.no_grad():
        model(torch.from_numpy(images))
        expected = rec.outputs["stage3.block1.relu2"].numpy().reshape(len(images), -1)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    # untrained copies are the seeded initialisation (no epoch), trained ones learned their dataset
    untrained = json.loads((reduced / "representation_sets" / "models" / "untrained-s0.history.json").read_text())
    trained = json.loads((reduced / "representation_sets" / "models" / "inverted-s0.history.json").read_text())
    assert untrained["epochs"] == [] and len(trained["epochs"]) == 6
    assert trained["eval_accuracy"] > 0.8 and untrained["eval_accuracy"] < 0.3


@slow
def test_reduced_tsne_and_figures(reduced):
    import matplotlib.image

    cfg = _cfg()
    rows = read_csv(reduced / "representation_sets" / "tsne.csv")
    assert len(rows) == 18 * cfg["tsne_per_set"]
    acts = reduced / "representation_sets" / "activations"
    for t, s, d in _expected_sets():
        label = f"{t}_{d}_s{s}"
        mine = [r for r in rows if r["set"] == label]
        assert len(mine) == cfg["tsne_per_set"]
        assert all(r["trained_on"] == t and r["tested_on"] == d and r["seed"] == s and r["model"] == f"{t}-s{s}" for r in mine)
        store_ids = set(_read_store(acts / f"{t}-s{s}__{d}.zarr")[1].tolist())
        assert len({r["sample_id"] for r in mine}) == len(mine) and {r["sample_id"] for r in mine} <= store_ids
    xy = np.array([[r["x"], r["y"]] for r in rows])
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 1
    for name in ("confusion.png", "tsne.png"):
        image = matplotlib.image.imread(reduced / "figures" / "representation_sets" / name)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image[..., :3].std() > 0.05
