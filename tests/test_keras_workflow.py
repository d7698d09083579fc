"""Keras in the workflow: a cross-framework comparison and the seed blog's experiment, reduced,
on a tiny CIFAR-10 archive built in the standard format."""

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from cifar_fixtures import make_cifar_archive
from reference import minibatch_cka
from workflow_runner import config_yaml, REPO, planned_jobs, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.keras]
pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cifar")
    path, sha256 = make_cifar_archive(directory, variant="cifar10", fmt="python", n_train=64, n_test=40, seed=0)
    return directory, sha256


def test_cross_framework_cka(tmp_path, archive):
    directory, sha256 = archive
    config = {
        "experiment": "xf",
        "dataset": {"name": "cifar10", "path": str(directory), "sha256": sha256, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 32},
        "models": {"torch8": {"framework": "torch", "depth": 8}, "keras8": {"framework": "keras", "depth": 8}},
        "seeds": [0],
        "extract": {"batch_size": 20},
        "similarity": {"batch_size": 16, "passes": 2, "compare": {"self": False, "across_seeds": False, "pairs": [["torch8", "keras8"]]}},
        "metrics": {"names": []},
    }
    run_snakemake(tmp_path, config)
    results = tmp_path / "results" / "xf"
    assert (results / "models" / "keras8" / "s0" / "e1.keras").is_file()
    assert (results / "models" / "torch8" / "s0" / "e1.pt").is_file()
    history = json.loads((results / "models" / "keras8" / "s0" / "e1.history.json").read_text())
    assert history["framework"] == "keras" and "default" in history["strategy"].lower()
    a, b = "torch8-s0-e1", "keras8-s0-e1"
    sim = xr.open_zarr(results / "similarity" / "cka" / f"{a}__{b}.zarr").load()
    assert (results / "figures" / "heatmaps" / f"{a}__{b}.png").is_file()
    store_a = zarr.open_group(str(results / "activations" / f"{a}.zarr"), mode="r")
    store_b = zarr.open_group(str(results / "activations" / f"{b}.zarr"), mode="r")
    assert store_b.attrs["framework"] == "keras" and store_a.attrs["framework"] == "torch"
    np.testing.assert_array_equal(store_a["sample_id"][:], np.arange(40))
    np.testing.assert_array_equal(store_b["sample_id"][:], np.arange(40))
    layers_a = ["stem.conv", "stage2.block1.relu2", "logits"]
    layers_b = ["stem.conv", "stage3.block1.relu2", "logits"]
    assert set(layers_b) <= set(sim["layer_b"].values)
    batches_a, batches_b = [], []
    for r in (1, 2):  # design.md's schedule, restated: seeded permutation, batches of 16, sorted rows
        perm = np.random.default_rng(r).permutation(40)
        for k in range(40 // 16):
            rows = np.sort(perm[k * 16 : (k + 1) * 16])
            batches_a.append([store_a[l][:][rows] for l in layers_a])
            batches_b.append([store_b[l][:][rows] for l in layers_b])
    expected = minibatch_cka(batches_a, batches_b)
    np.testing.assert_allclose(sim["cka"].sel(layer_a=layers_a, layer_b=layers_b).values, expected, atol=1e-5)


def test_seed_blog_dag_lists_the_experiment(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "experiments" / "seed_blog.yaml")
    assert jobs == {"train_keras": 3, "extract": 3, "gram_kernel": 1, "grams": 3, "similarity": 6, "heatmap": 6, "functional": 3, "all": 1}


def test_seed_blog_reduced_run(tmp_path, archive):
    directory, sha256 = archive
    overrides = {  # merged over the experiment's config (later --configfile files win)
        "dataset": {"path": str(directory), "sha256": sha256, "max_train": 32, "max_eval": 32},
        "train": {"epochs": 1, "batch_size": 16},
        "similarity": {"batch_size": 16, "passes": 1},
        "extract": {"batch_size": 16},
        # one thread a job, so two of them run at once on 2 cores: on 16 images a job's time is
        # mostly Keras building and tracing the model, not arithmetic
        "resources": {"train": {"threads": 1}, "extract": {"threads": 1}},
    }
    (tmp_path / "reduced.yaml").write_text(config_yaml(overrides))
    run_snakemake(tmp_path, REPO / "config" / "experiments" / "seed_blog.yaml", "--configfile", str(REPO / "config" / "experiments" / "seed_blog.yaml"), str(tmp_path / "reduced.yaml"))
    results = tmp_path / "results" / "seed_blog"
    for a, b in [("resnet50", "resnet101"), ("resnet50", "resnet152"), ("resnet101", "resnet152")]:
        sim = xr.open_zarr(results / "similarity" / "cka" / f"{a}-s0-e1__{b}-s0-e1.zarr").load()
        n_layers = {"resnet50": 177, "resnet101": 347, "resnet152": 517}  # docs/keras.md
        assert sim["cka"].shape == (n_layers[a], n_layers[b])
        assert sim["layer_a"].values[-2:].tolist() == ["logits", "predictions"]
        assert (results / "figures" / "heatmaps" / f"{a}-s0-e1__{b}-s0-e1.png").is_file()
        finite = sim["cka"].values[np.isfinite(sim["cka"].values)]
        assert finite.size > 0.9 * sim["cka"].size and finite.min() > -0.5 and finite.max() < 1.0 + 1e-4
