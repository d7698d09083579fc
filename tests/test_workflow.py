"""The whole workflow on a tiny config, run for real by Snakemake in a temporary directory."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from reference import minibatch_cka
from workflow_runner import REPO, planned_jobs, run_snakemake, stub_cifar

pytestmark = pytest.mark.slow

TINY = {
    "experiment": "tiny",
    "dataset": {"name": "digits", "eval_fraction": 0.1, "split_seed": 0, "image_size": 8},
    "train": {"epochs": 1, "batch_size": 64},
    "models": {"m8x1": {"depth": 8, "width": 1}, "m8x2": {"depth": 8, "width": 2}},
    "seeds": [0, 1],
    "extract": {"batch_size": 32, "shard_chunks": 2},
    "similarity": {"batch_size": 64, "passes": 2, "layer_block": 8, "compare": {"self": True, "across_seeds": True, "pairs": [["m8x1", "m8x2"]]}},
    "metrics": {"names": ["linear_cka", "pwcca", "procrustes"], "layer_stride": 4},
    "resources": {"similarity": {"threads": 1}},
}


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True):
    return run_snakemake(workdir, config, *args, check=check)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, TINY)
    return workdir


def instances():
    return [f"m8x{w}-s{s}-e1" for w in (1, 2) for s in (0, 1)]


def test_outputs_exist_with_contents(done):
    results = done / "results" / "tiny"
    for inst in instances():
        history = json.loads((results / "models" / inst.split("-")[0] / f"s{inst.split('-s')[1][0]}" / "e1.history.json").read_text())
        assert 0.0 < history["eval_accuracy"] <= 1.0
        sim = xr.open_zarr(results / "similarity" / "cka" / f"{inst}__{inst}.zarr")
        assert sim["cka"].dims == ("layer_a", "layer_b")
        assert list(sim["layer_a"].values)[:2] == ["stem.conv", "stem.bn"] and sim["layer_a"].values[-1] == "logits"
        np.testing.assert_allclose(np.diag(sim["cka"].values), 1.0, atol=1e-5)
    figures = results / "figures"
    import matplotlib.image

    for png in [figures / "self_similarity_grid.png", figures / "heatmaps" / "m8x1-s0-e1__m8x2-s0-e1.png"]:
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05
    for rule in ("train", "extract", "similarity"):
        assert list((results / "logs" / rule).rglob("*.log"))
    assert list((results / "benchmarks" / "similarity").rglob("*.tsv"))


def test_cka_matches_float64_reference_on_stored_activations(done):
    """Recompute a corner of one cross-model matrix from the stores, independently."""
    import zarr

    results = done / "results" / "tiny"
    a, b = "m8x1-s0-e1", "m8x2-s0-e1"
    store_a = zarr.open_group(str(results / "activations" / f"{a}.zarr"), mode="r")
    store_b = zarr.open_group(str(results / "activations" / f"{b}.zarr"), mode="r")
    np.testing.assert_array_equal(store_a["sample_id"][:], store_b["sample_id"][:])
    layers = ["stem.conv", "stage2.block1.relu1", "stage3.block1.relu2", "logits"]
    n_samples, batch = store_a["sample_id"].shape[0], TINY["similarity"]["batch_size"]
    batches_a, batches_b = [], []
    for r in range(1, TINY["similarity"]["passes"] + 1):  # the schedule of design.md, restated
        perm = np.random.default_rng(r).permutation(n_samples)
        for k in range(n_samples // batch):
            rows = np.sort(perm[k * batch : (k + 1) * batch])
            batches_a.append([store_a[l][:][rows] for l in layers])
            batches_b.append([store_b[l][:][rows] for l in layers])
    expected = minibatch_cka(batches_a, batches_b)
    sim = xr.open_zarr(results / "similarity" / "cka" / f"{a}__{b}.zarr")
    got = sim["cka"].sel(layer_a=layers, layer_b=layers).values
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sim.attrs["n_batches"] == len(batches_a)


def test_metrics_side_by_side_and_functional(done):
    """The full-batch metrics rule (linear CKA, PWCCA, Procrustes) and the functional rule."""
    import matplotlib.image
    import zarr

    import metric_reference as ref

    results = done / "results" / "tiny"
    a, b = "m8x1-s0-e1", "m8x2-s0-e1"
    store_a = zarr.open_group(str(results / "activations" / f"{a}.zarr"), mode="r")
    store_b = zarr.open_group(str(results / "activations" / f"{b}.zarr"), mode="r")
    for metric, reference in (("linear_cka", ref.linear_cka), ("procrustes", ref.procrustes)):
        sim = xr.open_zarr(results / "similarity" / metric / f"{a}__{b}.zarr").load()
        assert sim.attrs["metric"] == metric and sim["value"].dims == ("layer_a", "layer_b")
        layers_a = list(sim["layer_a"].values)
        assert layers_a[0] == "stem.conv" and layers_a[-1] == "logits" and len(layers_a) == 7  # 23 layers, stride 4, + logits
        layers_b = list(sim["layer_b"].values)
        for la, lb in [("stem.conv", "logits"), (layers_a[3], layers_b[2]), ("logits", "logits")]:
            expected = reference(store_a[la][:], store_b[lb][:])
            assert sim["value"].sel(layer_a=la, layer_b=lb).item() == pytest.approx(expected, abs=1e-8)
    pw = xr.open_zarr(results / "similarity" / "pwcca" / f"{a}__{b}.zarr")["value"].values
    assert np.all((pw >= 0) & (pw <= 1 + 1e-9))
    image = matplotlib.image.imread(results / "figures" / "metrics" / f"{a}__{b}_metrics.png")
    assert image.shape[1] > 3 * image.shape[0]  # four panels side by side
    functional = json.loads((results / "functional" / f"{a}__{b}.json").read_text())
    logits_a, logits_b, labels = store_a["logits"][:], store_b["logits"][:], store_a["labels"][:]
    assert functional["accuracy_a"] == pytest.approx(np.mean(logits_a.argmax(1) == labels))
    assert functional["disagreement"] == pytest.approx(np.mean(logits_a.argmax(1) != logits_b.argmax(1)))
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    assert functional["jsd_bits"] == pytest.approx(ref.jsd(softmax(logits_a.astype(float)), softmax(logits_b.astype(float))), abs=1e-6)
    assert -1 <= functional["confidence_rank_correlation"] <= 1
    assert sorted(p.name for p in (results / "functional").iterdir()) == sorted(
        f"{x}__{y}.json" for x, y in [("m8x1-s0-e1", "m8x1-s1-e1"), ("m8x2-s0-e1", "m8x2-s1-e1"), (a, b)]
    )


def test_report(done):
    """The report groups its figures by stage, then by comparison, and no two share a name."""
    import zipfile

    snakemake(done, TINY, "--report", str(done / "report.html"))
    html = (done / "report.html").read_text(errors="ignore")
    assert "CKA heatmaps" in html and "m8x1-s0-e1__m8x2-s0-e1" in html
    snakemake(done, TINY, "--report", str(done / "report.zip"))
    with zipfile.ZipFile(done / "report.zip") as archive:
        files = [n for n in archive.namelist() if n.startswith("report/data/raw/")]
        html = archive.read("report/report.html").decode()
    names = [Path(n).name for n in files]
    assert len(names) == 9 and len(set(names)) == len(names), names
    start = html.index("var categories = ") + len("var categories = ")
    categories, _ = json.JSONDecoder().raw_decode(html[start:])
    grouped = {cat: {sub: sorted(Path(f).name for f in fs) for sub, fs in subs.items()} for cat, subs in categories.items()}
    pair = "m8x1-s0-e1__m8x2-s0-e1"
    assert grouped == {
        "CKA heatmaps": {
            "Self-similarity": sorted(f"{i}__{i}.png" for i in instances()),
            "Across seeds": ["m8x1-s0-e1__m8x1-s1-e1.png", "m8x2-s0-e1__m8x2-s1-e1.png"],
            "Between models": [f"{pair}.png"],
            "Self-similarity grid (depth × width)": ["self_similarity_grid.png"],
        },
        "Metrics side by side": {"m8x1-s0-e1 vs m8x2-s0-e1": [f"{pair}_metrics.png"]},
    }


def test_rerun_only_what_is_stale(done):
    assert planned_jobs(done, TINY) == {}
    reordered = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v) for k, v in reversed(list(TINY.items()))}
    assert planned_jobs(done, reordered) == {}  # the order of config keys is not a change
    changed = json.loads(json.dumps(TINY))
    changed["similarity"]["batch_size"] = 32
    assert planned_jobs(done, changed) == {"gram_kernel": 1, "grams": 4, "similarity": 7, "heatmap": 7, "self_similarity_grid": 1, "metrics_figure": 1, "all": 1}
    changed = json.loads(json.dumps(TINY))
    changed["models"]["m8x1"]["train"] = {"lr": 0.01}
    dry = run_snakemake(done, changed, "-n").stdout
    assert "m8x1/s0/e1.pt" in dry and "/e6." not in dry  # the override keeps the global epochs
    # m8x1's two seeds: train, extract, Grams; its 2 self + 1 across-seed + 1 cross-model pairs
    # (+ the 3 metrics and the metrics figure of the m8x1-m8x2 pair, the functional of 2 pairs)
    assert planned_jobs(done, changed) == {"train": 2, "extract": 2, "grams": 2, "similarity": 4, "heatmap": 4, "self_similarity_grid": 1, "metric_similarity": 3, "metrics_figure": 1, "functional": 2, "all": 1}
    changed = json.loads(json.dumps(TINY))
    changed["figures"] = {"max_labels": 6}  # a heatmap option: the grid draws no layer labels
    assert planned_jobs(done, changed) == {"heatmap": 7, "metrics_figure": 1, "all": 1}


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["similarity"].update(passess=3), r"passess"),
        (lambda c: c["train"].update(epoch=3), r"epoch"),
        (lambda c: c["models"].update({"bad-name": {"depth": 8}}), r"bad-name"),
        (lambda c: c["models"].update({"../up": {"depth": 8}}), r"\.\./up"),
        (lambda c: c["similarity"]["compare"].update(pairs=[["m8x1", "nope"]]), r"nope"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, edit, message):
    config = json.loads(json.dumps(TINY))
    edit(config)
    result = snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr)
    assert len((result.stdout + result.stderr).splitlines()) <= 6  # short: never the schema
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("config", ["config/config.yaml", "config/experiments/seed_blog.yaml"])
def test_lint_is_clean(tmp_path, config):
    """`snakemake --lint` finds nothing (it checks, among others, that every rule has a log)."""
    stub_cifar(tmp_path)  # seed_blog names CIFAR data
    result = run_snakemake(tmp_path, REPO / config, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_heavy_rules_have_benchmarks():
    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for rule in ("train", "train_keras", "extract", "similarity", "metric_similarity"):
        body = text.split(f"rule {rule}:")[1].split("\nrule ")[0]
        assert "benchmark:" in body and "log:" in body, rule


def test_keep_stores_false_deletes_each_store_once_its_readers_are_done(tmp_path):
    """extract.keep_stores: false makes the stores temp(): the results are all there, the
    activation stores are gone; with the default (true) they stay (the `done` run above)."""
    config = {**TINY, "metrics": {"names": []}, "seeds": [0], "extract": {**TINY["extract"], "keep_stores": False}}
    snakemake(tmp_path, config)
    results = tmp_path / "results" / "tiny"
    assert sorted(p.name for p in (results / "similarity" / "cka").iterdir()) == ["m8x1-s0-e1__m8x1-s0-e1.zarr", "m8x1-s0-e1__m8x2-s0-e1.zarr", "m8x2-s0-e1__m8x2-s0-e1.zarr"]
    assert not list((results / "activations").glob("*.zarr")) if (results / "activations").exists() else True
    assert (results / "models" / "m8x1" / "s0" / "e1.pt").exists()


def test_keep_stores_default_keeps_them(done):
    assert len(list((done / "results" / "tiny" / "activations").glob("*.zarr"))) == len(instances())


def test_extract_dtype_float16_writes_float16_stores_and_cka_close_to_float32(tmp_path, done):
    """extract.dtype: float16 reaches every extract job: the layers are stored as float16, the
    logits as float32, and the CKA matrix is that of the float32 stores of the `done` run (the
    same checkpoints, copied) within float16's rounding."""
    import shutil

    import zarr

    config = {**TINY, "metrics": {"names": []}, "seeds": [0], "similarity": {**TINY["similarity"], "compare": {"self": False, "across_seeds": False, "pairs": [["m8x1", "m8x2"]]}}, "extract": {**TINY["extract"], "dtype": "float16"}}
    for model in ("m8x1", "m8x2"):
        shutil.copytree(done / "results" / "tiny" / "models" / model / "s0", tmp_path / "results" / "tiny" / "models" / model / "s0")
    snakemake(tmp_path, config, "--touch", *(f"results/tiny/models/{m}/s0/e1.pt" for m in ("m8x1", "m8x2")))  # trained: not retrained
    snakemake(tmp_path, config)
    assert planned_jobs(tmp_path, config) == {}
    store = zarr.open_group(str(tmp_path / "results" / "tiny" / "activations" / "m8x1-s0-e1.zarr"), mode="r")
    assert store["stem.conv"].dtype == np.float16 and store["logits"].dtype == np.float32
    pair = "m8x1-s0-e1__m8x2-s0-e1.zarr"
    half = xr.open_zarr(tmp_path / "results" / "tiny" / "similarity" / "cka" / pair)["cka"].values
    full = xr.open_zarr(done / "results" / "tiny" / "similarity" / "cka" / pair)["cka"].values
    assert np.nanmax(np.abs(half - full)) < 1e-3
    assert not (tmp_path / "results" / "tiny" / "logs" / "train").exists()  # nothing retrained


def test_a_gpu_for_similarity_goes_to_the_grams_jobs_only(tmp_path):
    """resources.similarity sizes both CKA rules; only the grams jobs (which compute Grams) ask
    for its GPU, the similarity jobs (products of stored Grams) do not."""
    config = json.loads(json.dumps(TINY))
    config["resources"]["similarity"] = {"threads": 1, "gpu": 1}
    dry = run_snakemake(tmp_path, config, "-n").stdout
    blocks = {rule: [] for rule in ("grams", "similarity")}
    for rule, resources in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)", dry, re.M):
        if rule in blocks:
            blocks[rule].append(resources)
    assert len(blocks["grams"]) == 4 and all("gpu=1" in r for r in blocks["grams"]), blocks
    assert len(blocks["similarity"]) == 7 and not any("gpu" in r for r in blocks["similarity"]), blocks
