"""The block-structure measure (layersim.experiments.nguyen.largest_block): the longest run of
alike layers (pairwise CKA above a threshold) each dominated by its first principal component.
Checked on hand-made self-similarity matrices and on synthetic activations whose CKA and PC1
shares come from float64 references written from the formulas here."""

import numpy as np
import pytest

from layersim.errors import LayersimError
from layersim.experiments.nguyen import largest_block, largest_high_cka_run


def two_runs(n=20, trivial=range(0, 10), block=range(12, 20)):
    """A self-similarity matrix with two bright squares on its diagonal: a long 'residual-stream'
    run (layers 0–9, CKA 0.95) and a shorter one (layers 12–19, CKA 0.93); 0.3 elsewhere."""
    c = np.full((n, n), 0.3)
    for run, value in ((trivial, 0.95), (block, 0.93)):
        idx = np.array(run, dtype=int)
        c[np.ix_(idx, idx)] = value
    np.fill_diagonal(c, 1.0)
    return c


def test_the_block_is_where_one_component_dominates_not_the_longest_bright_run():
    c = two_runs()
    share = np.full(20, 0.2)
    share[12:20] = 0.8  # one dominant direction in the shorter run only
    block = largest_block(c, share, cka_threshold=0.9, pc1_threshold=0.5)
    assert (block.start, block.stop, block.size, block.n_layers) == (12, 20, 8, 20)
    assert block.fraction == pytest.approx(0.4)
    # the bright run of flat-spectrum layers is longer, and is no block
    assert largest_high_cka_run(c, 0.9).size == 10
    assert largest_block(c, np.full(20, 0.2), cka_threshold=0.9).size == 0


def test_a_model_with_a_block_ranks_above_one_without():
    c = two_runs()
    with_block = np.where(np.arange(20) >= 12, 0.85, 0.25)
    without_block = np.full(20, 0.25)  # same heatmap, flat spectra throughout
    a = largest_block(c, with_block)
    b = largest_block(c, without_block)
    assert a.fraction > b.fraction == 0.0


def test_every_pair_must_be_alike_and_every_layer_dominated():
    c = two_runs(trivial=[], block=range(2, 8), n=10)
    share = np.full(10, 0.9)
    assert largest_block(c, share).size == 6
    c[2, 7] = c[7, 2] = 0.5  # ends of the run unlike: two overlapping runs of 5, the earliest wins
    got = largest_block(c, share)
    assert (got.start, got.stop) == (2, 7)
    share[4] = 0.45  # a layer without a dominant component splits the run
    got = largest_block(c, share)
    assert (got.start, got.stop) == (5, 8)


def test_a_lone_layer_or_undefined_layers_are_no_block():
    c = np.eye(5)
    assert largest_block(c, np.full(5, 0.9)).size == 0  # no two layers alike
    c = two_runs(trivial=[], block=range(0, 5), n=5)
    assert largest_block(c, np.array([0.9, np.nan, 0.9, np.nan, 0.9])).size == 0
    nan = np.full((5, 5), np.nan)
    assert largest_block(nan, np.full(5, 0.9)).size == 0
    assert largest_block(c, np.full(5, 0.9), min_size=6).size == 0


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(LayersimError, match="square"):
        largest_block(np.ones((3, 4)), np.ones(3))
    with pytest.raises(LayersimError, match="one entry per layer"):
        largest_block(np.ones((3, 3)), np.ones(4))


# --- synthetic activations -------------------------------------------------------------------


def reference_linear_cka(x, y):
    """Linear CKA of centred X, Y: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), float64."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def reference_pc1_share(x):
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    return s[0] ** 2 / np.sum(s**2)


def residual_stream(n_layers, dominant, *, n=200, p=20, seed=0):
    """Layers x_{l+1} = x_l + small noise (a residual stream: neighbours alike, flat spectrum);
    in the layers of ``dominant`` one datapoint direction v wᵀ is added with 4× the norm of the
    rest, as Nguyen et al. find inside the block."""
    rng = np.random.default_rng(seed)
    v, w = rng.standard_normal((n, 1)), rng.standard_normal((1, p))
    x = rng.standard_normal((n, p))
    layers = []
    for layer in range(n_layers):
        x = x + 0.15 * rng.standard_normal((n, p))
        direction = 4 * np.linalg.norm(x) / np.linalg.norm(v @ w) * (v @ w) if layer in dominant else 0
        layers.append(x + direction)
    cka = np.array([[reference_linear_cka(a, b) for b in layers] for a in layers])
    return cka, np.array([reference_pc1_share(a) for a in layers])


def test_on_synthetic_activations_only_the_dominated_stretch_is_a_block():
    deep_cka, deep_share = residual_stream(16, dominant=range(6, 14))
    shallow_cka, shallow_share = residual_stream(16, dominant=())
    assert deep_share[6:14].min() > 0.8 and shallow_share.max() < 0.2  # the premise
    assert largest_high_cka_run(shallow_cka, 0.9).size >= 4  # the residual stream is alike...
    shallow = largest_block(shallow_cka, shallow_share, cka_threshold=0.9)
    assert shallow.size == 0  # ...and is no block
    deep = largest_block(deep_cka, deep_share, cka_threshold=0.9)
    assert (deep.start, deep.stop) == (6, 14)
    assert deep.fraction > shallow.fraction


# --- the block_structure job: summary rows and figure -----------------------------------------


def test_block_structure_job_finds_the_block_and_reports_none_without(tmp_path):
    import csv
    from types import SimpleNamespace

    import xarray as xr

    from layersim.experiments.nguyen import PCShare, write_pc_shares
    from layersim.jobs import nguyen as jobs
    from layersim.store import write_similarity

    layers = ["stem.relu"] + [f"stage1.block{i}.relu2" for i in range(1, 10)] + ["pool", "logits"]
    c = two_runs(n=12, trivial=range(0, 6), block=range(6, 11))  # pool ends the block; logits apart
    with_block = np.where((np.arange(12) >= 6) & (np.arange(12) < 11), 0.9, 0.2)
    results, tables, entries = [], [], []
    for depth, inst, share in ((8, "flat-s0-e1", np.full(12, 0.2)), (56, "deep-s0-e1", with_block)):
        ds = xr.Dataset({"cka": (("layer_a", "layer_b"), c)}, coords={"layer_a": layers, "layer_b": layers}, attrs={"model_a": inst, "model_b": inst})
        results.append(str(write_similarity(ds, tmp_path / f"{inst}.zarr")))
        tables.append(str(tmp_path / f"{inst}.csv"))
        write_pc_shares([PCShare(name, 4, s, s, 1.0, "exact") for name, s in zip(layers, share)], tables[-1], attrs={"store": inst})
        entries.append({"model": inst.split("-")[0], "seed": 0, "depth": depth, "width": 1, "instance": inst})
    smk = SimpleNamespace(
        input=SimpleNamespace(results=results, pca=tables),
        output=SimpleNamespace(table=str(tmp_path / "summary.csv"), figure=str(tmp_path / "block_structure.png")),
        params=SimpleNamespace(instances=entries, layers=r"^stem\.relu$|relu2$|^pool$", threshold=0.9, depth_width=1, width_depths=[]),
        log=[str(tmp_path / "block_structure.log")],
        threads=1,
    )
    jobs.block_structure(smk)
    with open(smk.output.table) as f:
        rows = {r["instance"]: r for r in csv.DictReader(line for line in f if not line.startswith("#"))}
    deep, flat = rows["deep-s0-e1"], rows["flat-s0-e1"]
    assert (deep["block_start"], deep["block_end"], deep["block_size"], deep["n_layers"]) == ("stage1.block6.relu2", "pool", "5", "11")
    assert float(deep["block_mean_pc1_share"]) == pytest.approx(0.9) and float(deep["block_min_cka"]) == pytest.approx(0.93)
    assert (flat["block_start"], flat["block_size"], float(flat["block_fraction"])) == ("", "0", 0.0)
    assert flat["high_cka_run_size"] == "6"  # the flat-spectrum run the CKA-only measure called a block
    assert (tmp_path / "block_structure.png").stat().st_size > 0
