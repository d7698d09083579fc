"""Paper-figure regeneration (docs/papers.md): the full experiments' DAGs, and the reduced
experiments run end to end on the embedded default data."""

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from workflow_runner import REPO, planned_jobs, run_snakemake

EXPERIMENTS = REPO / "config" / "experiments"


def load(name: str) -> dict:
    return yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("# ")))


@pytest.mark.slow
def test_full_experiments_list_their_dags(tmp_path):
    nguyen = planned_jobs(tmp_path, EXPERIMENTS / "nguyen2021.yaml")
    # 15 ResNets × 2 seeds; each instance's Grams once; 30 self + 15 cross-seed + 3 deep-vs-wide CKA pairs
    assert nguyen == {"train": 30, "extract": 30, "pca": 30, "gram_kernel": 1, "grams": 30, "similarity": 48, "heatmap": 48, "functional": 18, "series_figure": 3, "cross_seed_figure": 1, "block_structure": 1, "self_similarity_grid": 1, "all": 1}
    kornblith = planned_jobs(tmp_path, EXPERIMENTS / "kornblith2019.yaml")
    assert kornblith == {"train": 10, "extract": 10, "identification": 1, "identification_figure": 1, "all": 1}
    kornblith_digits = planned_jobs(tmp_path, EXPERIMENTS / "kornblith2019_digits.yaml")
    assert kornblith_digits == {"train": 5, "extract": 5, "identification": 1, "identification_figure": 1, "all": 1}


@pytest.mark.slow
def test_identification_needs_two_seeds(tmp_path):
    config = load("kornblith2019_reduced")
    config["seeds"] = [0]
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0 and "at least 2" in result.stdout + result.stderr


def run_reduced(tmp_path_factory, name: str) -> tuple[Path, dict]:
    """Run an experiment's config in a fresh directory; returns the directory and the config
    (the rerun tests change the config and dry-run it there again)."""
    workdir = tmp_path_factory.mktemp(name)
    config = load(name)
    run_snakemake(workdir, config)
    return workdir, config


@pytest.fixture(scope="module")
def nguyen(tmp_path_factory):
    return run_reduced(tmp_path_factory, "nguyen2021_reduced")


@pytest.fixture(scope="module")
def kornblith(tmp_path_factory):
    return run_reduced(tmp_path_factory, "kornblith2019_reduced")


def _image(path):
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05
    return image


@pytest.mark.slow
def test_nguyen_reduced_figures_and_tables(nguyen):
    workdir, config = nguyen
    results = workdir / "results" / "nguyen2021_reduced"
    figures = results / "figures"
    e = f"e{config['train']['epochs']}"
    for name in ("series/depth_w1", "series/width_d8", "cross_seed", "block_structure", "self_similarity_grid", f"heatmaps/resnet74x1-s0-{e}__resnet8x2-s0-{e}", f"heatmaps/resnet8x2-s0-{e}__resnet8x2-s1-{e}"):
        _image(figures / f"{name}.png")
    instances = [f"{m}-s{s}-{e}" for m in config["models"] for s in config["seeds"]]
    for inst in instances:  # a PC-share curve in [0, 1] for every layer
        rows = read_csv(results / "pca" / f"{inst}.csv")
        assert rows[0]["layer"] == "stem.conv" and rows[-1]["layer"] == "logits"
        share = np.array([float(r["pc1_share"]) for r in rows])
        assert np.all((share >= 0) & (share <= 1)) and share.std() > 0
    summary = read_csv(results / "block_structure" / "summary.csv")
    assert sorted(r["instance"] for r in summary) == sorted(instances)
    for r in summary:  # a block (alike layers each dominated by one PC) may be absent: size 0
        assert 0 <= int(r["block_size"]) <= int(r["high_cka_run_size"]) <= int(r["n_layers"])
        assert 0 <= float(r["block_fraction"]) <= 1 and 0 <= float(r["max_pc1_share"]) <= 1
        assert (int(r["block_size"]) == 0) == (r["block_start"] == "")


def _block_layers(results: Path, inst: str, pattern: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The layers ``pattern`` selects from ``inst``'s self-similarity, their CKA matrix and their
    PC1 shares, read from the similarity store and the PCA table (not from the summary)."""
    import re

    import xarray as xr

    cka = xr.open_zarr(results / "similarity" / "cka" / f"{inst}__{inst}.zarr")["cka"]
    layers = [str(name) for name in cka["layer_a"].values if re.search(pattern, str(name))]
    shares = {r["layer"]: float(r["pc1_share"]) for r in read_csv(results / "pca" / f"{inst}.csv")}
    return layers, cka.sel(layer_a=layers, layer_b=layers).values, np.array([shares[name] for name in layers])


@pytest.mark.slow
def test_nguyen_reduced_block_in_deep_model_only(nguyen):
    """Nguyen et al.'s block structure: the deep ResNet-74 has a block (consecutive layers,
    pairwise CKA > 0.9, each with PC1 share > 0.5) in stages 2-3; the shallow ResNet-8s have
    none, although adjacent layers of theirs exceed CKA 0.9 (the old longest-CKA-run measure gave
    them a block). Checked against the similarity stores and PCA tables."""
    workdir, config = nguyen
    results = workdir / "results" / "nguyen2021_reduced"
    settings = config["papers"]["nguyen"]["block_structure"]
    summary = {(r["model"], int(r["seed"])): r for r in read_csv(results / "block_structure" / "summary.csv")}
    for seed in config["seeds"]:
        deep = summary[("resnet74x1", seed)]
        assert int(deep["n_layers"]) == 38  # stem, 3 stages × 12 blocks, pool
        assert float(deep["block_fraction"]) >= 0.25 and deep["block_start"].startswith(("stage2.", "stage3."))
        layers, cka, share = _block_layers(results, deep["instance"], settings["layers"])
        block = slice(layers.index(deep["block_start"]), layers.index(deep["block_end"]) + 1)
        assert block.stop - block.start == int(deep["block_size"])
        assert np.all(cka[block, block] > settings["threshold"]) and np.all(share[block] > 0.5)
        for model in ("resnet8x1", "resnet8x2", "resnet20x1"):
            shallow = summary[(model, seed)]
            layers, cka, share = _block_layers(results, shallow["instance"], settings["layers"])
            assert int(shallow["block_size"]) == 0 and share.max() < 0.5  # no layer dominated by one PC
        layers, cka, share = _block_layers(results, summary[("resnet8x1", seed)]["instance"], settings["layers"])
        assert np.any(np.diag(cka, 1) > settings["threshold"])  # the old measure's "block"


@pytest.mark.slow
def test_nguyen_reduced_figure_options_rerun_only_figures(nguyen):
    workdir, config = nguyen
    assert planned_jobs(workdir, config) == {}
    changed = copy.deepcopy(config)
    changed["papers"]["nguyen"]["block_structure"]["threshold"] = 0.8
    assert planned_jobs(workdir, changed) == {"block_structure": 1, "all": 1}
    changed = copy.deepcopy(config)
    changed["figures"]["max_labels"] = 6
    assert planned_jobs(workdir, changed) == {"heatmap": 13, "series_figure": 2, "all": 1}
    changed = copy.deepcopy(config)
    changed["papers"]["nguyen"]["pca"]["n_iter"] = 3  # a PCA option: every PCA and the figures that read it
    assert planned_jobs(workdir, changed) == {"pca": 8, "series_figure": 2, "block_structure": 1, "all": 1}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The embedded default, config/config.yaml, in a fresh directory: every model trained and
    extracted, and the outputs the test reads (its block summary, the self-similarity grid and
    the block figure); the other pairs, heatmaps and functional outputs are left out (CI time)."""
    workdir = tmp_path_factory.mktemp("default")
    targets = [f"results/default/{t}" for t in ("block_structure/summary.csv", "figures/self_similarity_grid.png", "figures/block_structure.png")]
    run_snakemake(workdir, REPO / "config" / "config.yaml", *targets)
    return workdir / "results" / "default", yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.slow
def test_default_run_block_summary_ranks_a_deep_model_with_a_block_first(default_run):
    """The default's block summary puts a ResNet-74 with a block first, its block checked against
    the similarity store and PCA table (pairwise CKA > τ, PC1 share > 0.5 on every layer of it);
    the ResNet-8s (×1 and ×2), whose heatmaps show no block, rank below it with none."""
    results, config = default_run
    settings = config["papers"]["nguyen"]["block_structure"]
    summary = read_csv(results / "block_structure" / "summary.csv")
    assert len(summary) == len(config["models"]) * len(config["seeds"])
    ranked = sorted(summary, key=lambda r: float(r["block_fraction"]), reverse=True)
    first = ranked[0]
    assert first["model"].startswith("resnet74") and int(first["block_size"]) >= 3
    layers, cka, share = _block_layers(results, first["instance"], settings["layers"])
    block = slice(layers.index(first["block_start"]), layers.index(first["block_end"]) + 1)
    assert block.stop - block.start == int(first["block_size"])
    assert np.all(cka[block, block] > settings["threshold"]) and np.all(share[block] > 0.5)
    for r in summary:
        if r["model"] in ("resnet8x1", "resnet8x2"):
            layers, cka, share = _block_layers(results, r["instance"], settings["layers"])
            assert int(r["block_size"]) == 0 and share.max() < 0.5, r["instance"]
    _image(results / "figures" / "self_similarity_grid.png")
    _image(results / "figures" / "block_structure.png")


@pytest.mark.slow
def test_kornblith_reduced_table(kornblith):
    workdir, config = kornblith
    results = workdir / "results" / "kornblith2019_reduced"
    rows = read_csv(results / "identification" / "tiny10" / "accuracy.csv")
    assert [r["metric"] for r in rows] == config["papers"]["kornblith"].get("metrics", [r["metric"] for r in rows])
    assert len(rows) == 11
    for r in rows:  # 4 networks: 12 ordered pairs × 9 layers (8 conv ReLUs + pool)
        assert 0.0 <= float(r["accuracy"]) <= 100.0 and int(r["n_trials"]) == 108
    # What the config's header says the run shows: Table 2's ordering between families, every CKA
    # index above every other index, and the CKA indexes well above chance (11 %).
    accuracy = {r["metric"]: float(r["accuracy"]) for r in rows}
    cka = [v for m, v in accuracy.items() if "cka" in m]
    others = [v for m, v in accuracy.items() if "cka" not in m]
    assert min(cka) > max(others) and min(cka) >= 50.0, accuracy
    _image(results / "figures" / "identification" / "tiny10.png")
    import xarray as xr

    sim = xr.open_zarr(results / "identification" / "tiny10" / "similarity.zarr")
    assert sim["similarity"].sizes == {"metric": 11, "network_a": 4, "network_b": 4, "layer_a": 9, "layer_b": 9}
    assert "logits" not in list(sim["layer_a"].values)
    assert planned_jobs(workdir, config) == {}
