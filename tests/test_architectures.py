"""Issue 9, item 1: metric vs function across architectures (thesis §3.3, Fig. 3.4, Table 3.1).

Unit tests of the pair table and the correlation table on small synthetic stores, and the
reduced experiment run end to end by Snakemake, its numbers checked against float64
computations from the stores' raw arrays (tests/metric_reference.py, not layersim.metrics)."""

import math
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest
from metric_reference import cca_rho, jsd as ref_jsd, linear_cka as ref_cka, procrustes as ref_procrustes, pwcca as ref_pwcca
from scipy.stats import rankdata
from workflow_runner import REPO, planned_jobs, run_experiment, run_snakemake

from layersim.experiments.architectures import THESIS_TABLE_3_1, ArchitecturesError, correlation_rows, pair_rows
from layersim.io import read_csv
from layersim.store import write_activations

METRICS = ["linear_cka", "cca_mean_rho", "svcca", "pwcca", "procrustes"]
ARCHS = ["vgg11", "vgg13", "vgg16", "resnet18", "resnet34", "mobilenet", "mobilenetv2"]


def ref_spearman(x, y):
    """Pearson correlation of the ranks (average ranks for ties)."""
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def ref_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def make_store(path, pool, logits, labels, extra_layer=None):
    n = len(labels)
    layers = {"pool": pool.astype(np.float32), "logits": logits.astype(np.float32)}
    if extra_layer is not None:
        layers = {"other": extra_layer.astype(np.float32), **layers}
    write_activations(path, iter([layers]), sample_id=np.arange(n), labels=labels, attrs={})
    return str(path)


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    n, classes = 60, 4
    labels = np.arange(n) % classes
    base = rng.normal(size=(n, 6))
    out = {}
    for name, noise in [("a-s0-e3", 0.1), ("b-s0-e3", 0.5), ("a-s1-e3", 1.0)]:
        pool = base @ rng.normal(size=(6, 5)) + noise * rng.normal(size=(n, 5))
        logits = 3 * np.eye(classes)[labels] + noise * 4 * rng.normal(size=(n, classes))
        out[name] = make_store(tmp_path / f"{name}.zarr", pool, logits, labels)
    return out


def test_pairs_within_each_group_match_float64_references(stores, tmp_path):
    paths = list(stores.values())
    rows = pair_rows({"trained": paths[:3], "untrained": paths[:2]}, layer="pool", metrics=METRICS)
    assert [(r["group"], r["a"], r["b"]) for r in rows] == [("trained", "a-s0-e3", "b-s0-e3"), ("trained", "a-s0-e3", "a-s1-e3"), ("trained", "b-s0-e3", "a-s1-e3"), ("untrained", "a-s0-e3", "b-s0-e3")]
    row = rows[1]  # a-s0 vs a-s1: same model, two seeds
    assert row["same_model"] and row["seed_a"] == 0 and row["seed_b"] == 1 and row["model_a"] == "a"
    import zarr

    ga, gb = zarr.open_group(stores["a-s0-e3"], mode="r"), zarr.open_group(stores["a-s1-e3"], mode="r")
    xa, xb = np.asarray(ga["pool"][:], np.float64), np.asarray(gb["pool"][:], np.float64)
    pa, pb, labels = ref_softmax(ga["logits"][:]), ref_softmax(gb["logits"][:]), ga["labels"][:]
    assert row["linear_cka"] == pytest.approx(ref_cka(xa, xb), abs=1e-6)
    assert row["cca_mean_rho"] == pytest.approx(cca_rho(xa, xb).mean(), abs=1e-6)
    assert row["pwcca"] == pytest.approx(ref_pwcca(xa, xb), abs=1e-6)
    assert row["procrustes"] == pytest.approx(ref_procrustes(xa, xb), abs=1e-6)
    assert row["jsd_bits"] == pytest.approx(ref_jsd(pa, pb), abs=1e-9)
    conf_a, conf_b = pa[np.arange(len(labels)), labels], pb[np.arange(len(labels)), labels]
    assert row["rank_correlation"] == pytest.approx(ref_spearman(conf_a, conf_b), abs=1e-9)
    assert row["disagreement"] == pytest.approx(np.mean(pa.argmax(1) != pb.argmax(1)))
    assert row["accuracy_a"] == pytest.approx(np.mean(pa.argmax(1) == labels))


def test_correlation_table_against_ranks_and_least_squares_by_hand():
    rng = np.random.default_rng(1)
    pairs = [{"group": "trained", "linear_cka": c, "procrustes": 1 - c, "jsd_bits": 0.5 - 0.4 * c + 0.05 * e, "rank_correlation": c + 0.1 * e} for c, e in zip(rng.random(12), rng.normal(size=12))]
    pairs += [{"group": "untrained", "linear_cka": c, "procrustes": 1 - c, "jsd_bits": 0.0, "rank_correlation": 0.0} for c in rng.random(5)]
    rows = correlation_rows(pairs, ["linear_cka", "procrustes"])
    assert [(r["metric"], r["functional"]) for r in rows] == [("linear_cka", "jsd_bits"), ("linear_cka", "rank_correlation"), ("procrustes", "jsd_bits"), ("procrustes", "rank_correlation")]
    trained = pairs[:12]
    for r in rows:
        x = np.array([p[r["metric"]] for p in trained])
        y = np.array([p[r["functional"]] for p in trained])
        assert r["n_pairs"] == 12
        assert r["spearman_rho"] == pytest.approx(ref_spearman(x, y), abs=1e-12)
        # least squares by the normal equations
        slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
        assert r["slope"] == pytest.approx(slope, rel=1e-9) and r["intercept"] == pytest.approx(y.mean() - slope * x.mean(), rel=1e-9, abs=1e-12)
        xa, ya = [p[r["metric"]] for p in pairs], [p[r["functional"]] for p in pairs]
        assert r["spearman_rho_all"] == pytest.approx(ref_spearman(xa, ya), abs=1e-12)
    # a distance flips the sign of the similarity's correlations
    assert rows[0]["spearman_rho"] == pytest.approx(-rows[2]["spearman_rho"]) and rows[0]["kind"] == "similarity" and rows[2]["kind"] == "distance"
    assert rows[0]["thesis_rho"] == THESIS_TABLE_3_1[("linear_cka", "jsd_bits")] == -0.75 and rows[2]["thesis_rho"] == ""


def test_undefined_values_are_nan_with_a_log_line_and_not_counted(tmp_path, caplog):
    n, labels = 30, np.arange(30) % 3
    rng = np.random.default_rng(2)
    good = make_store(tmp_path / "m-s0-e1.zarr", rng.normal(size=(n, 4)), rng.normal(size=(n, 3)), labels)
    dead = make_store(tmp_path / "d-s0-e1.zarr", np.zeros((n, 4)), rng.normal(size=(n, 3)), labels)  # constant features
    with caplog.at_level("WARNING", logger="layersim"):
        rows = pair_rows({"trained": [good, dead]}, layer="pool", metrics=["linear_cka"])
    assert math.isnan(rows[0]["linear_cka"]) and "linear_cka: undefined" in caplog.text and "m-s0-e1 vs d-s0-e1" in caplog.text
    table = correlation_rows(rows, ["linear_cka"])
    assert all(r["n_pairs"] == 0 and math.isnan(r["spearman_rho"]) for r in table)


def test_bad_inputs_name_the_problem(stores, tmp_path):
    paths = list(stores.values())
    with pytest.raises(ArchitecturesError, match="no layer 'stage4.block2.relu2'.*architectures.layer"):
        pair_rows({"trained": paths}, layer="stage4.block2.relu2", metrics=["linear_cka"])
    with pytest.raises(ArchitecturesError, match="unknown metrics \\['cka'\\]"):
        pair_rows({"trained": paths}, layer="pool", metrics=["cka"])
    with pytest.raises(ArchitecturesError, match="at least two model instances"):
        pair_rows({"trained": paths[:1]}, layer="pool", metrics=["linear_cka"])


def test_untrained_copy_is_the_trained_instance_at_initialisation(tmp_path, monkeypatch):
    """architectures_init saves the same seeded initialisation train_torch starts from."""
    import torch

    from layersim.data import Dataset, Split
    from layersim.jobs.architectures import architectures_init
    from layersim.train.torch import train_torch

    rng = np.random.default_rng(0)
    images = rng.random((20, 1, 8, 8), dtype=np.float32)
    split = Split(images, np.arange(20) % 2, np.arange(20))
    dataset = Dataset("tiny", split, split, num_classes=2)
    arch, train = {"family": "resnet4stage", "depth": 18, "width": 0.125}, {"epochs": 1, "batch_size": 10}
    train_torch(arch, train, dataset, seed=3, checkpoint=tmp_path / "t.pt", history=tmp_path / "t.json", progress=False, epoch_checkpoints={0: tmp_path / "e0.pt"})
    monkeypatch.setattr("layersim.jobs.architectures.load_dataset", lambda cfg: dataset)
    smk = SimpleNamespace(params=SimpleNamespace(arch=arch, train=train, dataset={}), wildcards=SimpleNamespace(seed="3"), output=SimpleNamespace(checkpoint=str(tmp_path / "init.pt"), history=str(tmp_path / "init.json")), threads=1, log=[str(tmp_path / "init.log")])
    architectures_init(smk)
    init = torch.load(tmp_path / "init.pt", weights_only=True)
    e0 = torch.load(tmp_path / "e0.pt", weights_only=True)
    trained = torch.load(tmp_path / "t.pt", weights_only=True)
    assert init["epoch"] == 0 and init["arch"] == arch
    for key, value in e0["state_dict"].items():
        torch.testing.assert_close(init["state_dict"][key], value, rtol=0, atol=0)
    assert not torch.equal(init["state_dict"]["stem.conv.weight"], trained["state_dict"]["stem.conv.weight"])


# --- The workflow ---------------------------------------------------------------------------


@pytest.mark.slow
def test_full_dag_is_listed(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "experiments" / "architectures.yaml")
    # 7 architectures × 2 seeds, trained and untrained copies, one pair table, one summary
    assert jobs == {"train": 14, "extract": 14, "architectures_init": 14, "architectures_extract_untrained": 14, "architectures_pairs": 1, "architectures_summary": 1, "all": 1}


@pytest.mark.slow
def test_default_dag_has_no_architectures_jobs(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "config.yaml")
    assert not {"architectures_init", "architectures_pairs", "architectures_summary"} & set(jobs)


@pytest.mark.slow
def test_config_naming_an_unknown_model_is_refused(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config" / "experiments" / "architectures_reduced.yaml").read_text())
    config["papers"]["architectures"]["models"] = ["vgg11", "vgg19"]
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0 and "papers.architectures.models: 'vgg19' is not a model under models:" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    return run_experiment(tmp_path_factory, "architectures_reduced")


@pytest.mark.slow
def test_reduced_pairs_table(reduced):
    rows = read_csv(reduced / "architectures" / "pairs.csv")
    instances = [f"{a}-s0-e3" for a in ARCHS]
    untrained = [f"{a}-s0-e0" for a in ARCHS]
    assert [(r["a"], r["b"]) for r in rows if r["group"] == "trained"] == list(combinations(instances, 2))
    assert [(r["a"], r["b"]) for r in rows if r["group"] == "untrained"] == list(combinations(untrained, 2))
    for r in rows:
        assert all(math.isfinite(r[m]) for m in METRICS + ["jsd_bits", "rank_correlation"]), r
        assert -1e-9 <= r["linear_cka"] <= 1 + 1e-9 and 0 <= r["cca_mean_rho"] <= 1 + 1e-9 and 0 <= r["pwcca"] <= 1 + 1e-9
        assert 0 <= r["procrustes"] <= 2 and 0 <= r["jsd_bits"] <= 1 and -1 <= r["rank_correlation"] <= 1
    trained = [r for r in rows if r["group"] == "trained"]
    # trained models classify digits well above chance and agree far more than untrained copies
    assert min(min(r["accuracy_a"], r["accuracy_b"]) for r in trained) > 0.3
    assert np.mean([r["disagreement"] for r in trained]) < np.mean([r["disagreement"] for r in rows if r["group"] == "untrained"])


@pytest.mark.slow
def test_reduced_pair_against_float64_from_the_stores(reduced):
    """vgg16 vs mobilenetv2 (64- vs 160-wide features): every number from the raw Zarr arrays."""
    import zarr

    row = next(r for r in read_csv(reduced / "architectures" / "pairs.csv") if r["a"] == "vgg16-s0-e3" and r["b"] == "mobilenetv2-s0-e3")
    ga = zarr.open_group(str(reduced / "activations" / "vgg16-s0-e3.zarr"), mode="r")
    gb = zarr.open_group(str(reduced / "activations" / "mobilenetv2-s0-e3.zarr"), mode="r")
    xa, xb = np.asarray(ga["pool"][:], np.float64), np.asarray(gb["pool"][:], np.float64)
    assert xa.shape == (540, 64) and xb.shape == (540, 160)
    pa, pb, labels = ref_softmax(ga["logits"][:]), ref_softmax(gb["logits"][:]), ga["labels"][:]
    assert row["linear_cka"] == pytest.approx(ref_cka(xa, xb), abs=1e-5)
    assert row["procrustes"] == pytest.approx(ref_procrustes(xa, xb), abs=1e-5)
    assert row["jsd_bits"] == pytest.approx(ref_jsd(pa, pb), abs=1e-5)
    rows_ = np.arange(len(labels))
    assert row["rank_correlation"] == pytest.approx(ref_spearman(pa[rows_, labels], pb[rows_, labels]), abs=1e-5)


@pytest.mark.slow
def test_reduced_correlation_table_and_figure(reduced):
    rows = read_csv(reduced / "architectures" / "correlations.csv")
    assert [(r["metric"], r["functional"]) for r in rows] == [(m, f) for m in METRICS for f in ("jsd_bits", "rank_correlation")]
    pairs = [r for r in read_csv(reduced / "architectures" / "pairs.csv") if r["group"] == "trained"]
    for r in rows:
        assert r["n_pairs"] == 21 and -1 <= r["spearman_rho"] <= 1 and -1 <= r["spearman_rho_all"] <= 1
        assert r["spearman_rho"] == pytest.approx(ref_spearman([p[r["metric"]] for p in pairs], [p[r["functional"]] for p in pairs]), abs=1e-5)
    cka_jsd = rows[0]
    assert cka_jsd["thesis_rho"] == -0.75 and cka_jsd["spearman_rho"] < 0  # more similar features, closer outputs
    markdown = (reduced / "architectures" / "correlations.md").read_text()
    assert markdown.count("\n") == 2 + len(rows) and "| linear_cka | similarity | jsd_bits | 21 |" in markdown
    import matplotlib.image

    image = matplotlib.image.imread(reduced / "figures" / "architectures" / "metric_vs_function.png")
    assert image.shape[0] > 1500 and image.shape[1] > 800 and image[..., :3].std() > 0.05  # 5 rows (metrics) × 2 panels


def test_extract_layers_keeps_only_the_matching_layers_and_logits(tmp_path, monkeypatch):
    """Only the layers ``layers`` matches, and ``logits``; on the CPU the writes overlap the
    forward pass on up to 2 threads and take turns with it on more (``overlap_writes``)."""
    import torch

    from layersim.extract import torch as extract_module
    from layersim.data import Split
    from layersim.errors import LayersimError
    from layersim.extract.torch import extract_torch
    from layersim.models.torch import build_torch_model
    from layersim.store import ActivationStore

    arch = {"family": "mobilenetv2", "depth": 53, "width": 0.125}
    torch.manual_seed(0)
    model = build_torch_model(arch, num_classes=3, in_channels=1)
    torch.save({"state_dict": model.state_dict(), "arch": arch, "num_classes": 3, "in_channels": 1, "seed": 0, "epoch": 0}, tmp_path / "m.pt")
    images = np.random.default_rng(0).random((10, 1, 8, 8), dtype=np.float32)
    split = Split(images, np.arange(10) % 3, np.arange(10))
    overlap, original = [], extract_module.write_activations
    monkeypatch.setattr(extract_module, "write_activations", lambda *a, **kw: overlap.append(kw["overlap"]) or original(*a, **kw))
    extract_torch(tmp_path / "m.pt", split, tmp_path / "m.zarr", batch_size=5, progress=False, layers="^pool$")
    extract_torch(tmp_path / "m.pt", split, tmp_path / "m3.zarr", batch_size=5, progress=False, layers="^pool$", threads=3)
    assert overlap == [True, False]
    np.testing.assert_allclose(ActivationStore(tmp_path / "m3.zarr").read("pool"), ActivationStore(tmp_path / "m.zarr").read("pool"), rtol=1e-5, atol=1e-6)  # 3 threads sum in another order
    store = ActivationStore(tmp_path / "m.zarr")
    assert store.layers == ["pool", "logits"]
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(store.read("logits"), expected, rtol=1e-5, atol=1e-6)
    listed = r"no layer matches the extract.layers pattern 'nope'; layers: .*, pool, logits$"
    with pytest.raises(LayersimError, match=listed):
        extract_torch(tmp_path / "m.pt", split, tmp_path / "n.zarr", batch_size=5, progress=False, layers="nope")
    with pytest.raises(LayersimError, match=r"the extract.layers pattern '\(' is not a regular expression"):
        extract_torch(tmp_path / "m.pt", split, tmp_path / "n.zarr", batch_size=5, progress=False, layers="(")
    assert not (tmp_path / "n.zarr").exists()
