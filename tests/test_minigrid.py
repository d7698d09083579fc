"""Issue 9, item 7: PPO agents on MiniGrid (layersim.experiments.ppo), their pairwise comparison
(layersim.experiments.minigrid) and the reduced workflow (config/experiments/minigrid_reduced.yaml)."""

import json
import math
import re

import numpy as np
import pytest
import torch
from metric_reference import jsd as reference_jsd
from metric_reference import linear_cka as reference_cka
from scipy.stats import spearmanr
from workflow_runner import REPO, planned_jobs, run_experiment, run_snakemake

from layersim.experiments import ppo as rl
from layersim.errors import LayersimError
from layersim.io import read_csv
from layersim.metrics import MetricInputError, distribution_rank_correlation

pytest.importorskip("minigrid")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def views(n, seed=0):
    """n MiniGrid observations of a random walk on Empty-5x5."""
    states, _ = rl.run_episodes(None, 5, 1, seed=seed)
    return states[:n]


# --- networks, errors ---------------------------------------------------------------------


def test_feature_layer_widths():
    obs = views(10)
    original, bottleneck = rl.AgentNet("original"), rl.AgentNet("bottleneck", bottleneck=8)
    assert rl.policy_outputs(original, obs)[0].shape == (10, 64)
    assert rl.policy_outputs(bottleneck, obs)[0].shape == (10, 8)
    assert rl.policy_outputs(rl.AgentNet("bottleneck", bottleneck=3), obs)[0].shape == (10, 3)
    # the bottleneck is all the actor sees: its final layer reads k inputs, the original's 64 → 64
    assert bottleneck.actor.in_features == 8 and isinstance(original.actor[0], torch.nn.Linear) and original.actor[0].in_features == 64
    logits, values, feats = bottleneck(obs)
    assert logits.shape == (10, rl.N_ACTIONS) and values.shape == (10,)
    torch.testing.assert_close(bottleneck.actor(feats), logits)  # the CKA layer feeds the logits directly
    assert (feats.abs() <= 1).all()  # after the tanh


def test_bad_input_is_one_clear_error():
    with pytest.raises(LayersimError, match="architecture 'wide' is unknown"):
        rl.AgentNet("wide")
    with pytest.raises(LayersimError, match="grid size 7 has no Empty environment"):
        rl.make_env(7)
    with pytest.raises(LayersimError, match="unknown PPO setting.*lr_decay"):
        rl.ppo_settings({"lr_decay": 0.5})
    with pytest.raises(LayersimError, match="multiple of minibatch"):
        rl.ppo_settings({"n_envs": 3, "steps": 10, "minibatch": 4})
    with pytest.raises(LayersimError, match=r"\(n, 7, 7, 3\)"):
        rl.AgentNet("original")(np.zeros((2, 5, 5, 3)))


def test_categories_follow_the_thesis():
    assert [rl.category(r) for r in (0.95, 0.81, 0.8, 0.5, 0.2, 0.19, 0.0)] == ["optimal", "optimal", "mediocre", "mediocre", "mediocre", "poor", "poor"]
    assert rl.pair_colour_group("mediocre", "optimal") == "optimal vs mediocre"
    assert rl.pair_colour_group("optimal", "poor") == "optimal vs poor"
    assert rl.pair_colour_group("poor", "mediocre") == "other"
    with pytest.raises(LayersimError, match="finite"):
        rl.category(float("nan"))


# --- PPO ----------------------------------------------------------------------------------


def test_training_is_deterministic_for_a_seed():
    settings = {"frames": 512, "n_envs": 4, "steps": 64, "minibatch": 64}
    a, hist_a = rl.train_agent("bottleneck", 5, 3, settings)
    b, hist_b = rl.train_agent("bottleneck", 5, 3, settings)
    c, _ = rl.train_agent("bottleneck", 5, 4, settings)
    assert hist_a == hist_b and len(hist_a) == 2 and hist_a[-1]["frames"] == 512
    for (name, wa), wb, wc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(wa, wb), name
    assert not all(torch.equal(wa, wc) for wa, wc in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.slow
def test_ppo_learns_empty_5x5():
    """A small PPO budget beats a random policy by a wide margin on the agent's own grid."""
    _, random_returns = rl.run_episodes(None, 5, 30, seed=1)
    net, history = rl.train_agent("original", 5, 0, {"frames": 10240})
    _, returns = rl.run_episodes(net, 5, 30, seed=1)
    assert history[-1]["frames"] == 10240 and history[-1]["entropy"] < history[0]["entropy"]
    assert random_returns.mean() < 0.35  # random walk: rarely reaches the goal quickly
    assert returns.mean() > 0.8 and returns.mean() > random_returns.mean() + 0.4, (returns.mean(), random_returns.mean())


def test_saved_agent_reloads_identically(tmp_path):
    net = rl.AgentNet("bottleneck", bottleneck=5)
    rl.save_agent(net, tmp_path / "a.pt")
    again = rl.load_agent(tmp_path / "a.pt")
    obs = views(20)
    feats, probs = rl.policy_outputs(again, obs)
    assert again.arch == "bottleneck" and feats.shape == (20, 5)
    np.testing.assert_array_equal(feats, rl.policy_outputs(net, obs)[0])
    np.testing.assert_allclose(probs.sum(1), 1.0)


# --- per-state rank correlation -------------------------------------------------------------


def test_distribution_rank_correlation_is_the_mean_per_row_spearman():
    rng = np.random.default_rng(0)
    P, Q = rng.dirichlet(np.ones(7), 50), rng.dirichlet(np.ones(7), 50)
    Q[3] = Q[3, ::-1]
    P[5, :3] = P[5, 0]  # ties get average ranks
    P[5] /= P[5].sum()
    expected = np.mean([spearmanr(p, q).statistic for p, q in zip(P, Q)])
    assert distribution_rank_correlation(P, Q) == pytest.approx(expected, abs=1e-12)
    assert distribution_rank_correlation(P, P) == pytest.approx(1.0)
    assert distribution_rank_correlation(P, (1 - P) / 6) == pytest.approx(-1.0)  # every order reversed
    with pytest.raises(MetricInputError, match="1 sample"):
        distribution_rank_correlation(np.vstack([P[:2], np.full(7, 1 / 7)]), Q[:3])


# --- workflow -----------------------------------------------------------------------------


@pytest.mark.slow
def test_full_dag_is_listed(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "experiments" / "minigrid.yaml")
    # 2 networks × 4 training grids × 5 seeds; one compare job per (network, training grid)
    assert jobs == {"minigrid_train": 40, "minigrid_compare": 8, "minigrid_summary": 1, "all": 1}


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    return run_experiment(tmp_path_factory, "minigrid_reduced")


@pytest.mark.slow
def test_reduced_run_agents(reduced):
    for arch in ("original", "bottleneck"):
        for seed in range(4):
            record = json.loads((reduced / "minigrid" / "agents" / f"{arch}-g5-s{seed}.json").read_text())
            assert record["category"] == rl.category(record["mean_return"])
            assert record["history"][-1]["frames"] == 6144
            net = rl.load_agent(reduced / "minigrid" / "agents" / f"{arch}-g5-s{seed}.pt")
            assert net.arch == arch and rl.policy_outputs(net, views(3))[0].shape[1] == (64 if arch == "original" else 8)
            assert (reduced / "benchmarks" / "minigrid" / "train" / f"{arch}-g5-s{seed}.tsv").exists()
    # the budget is enough for most agents to beat a random policy (~0.2) clearly
    returns = [json.loads(p.read_text())["mean_return"] for p in (reduced / "minigrid" / "agents").glob("*.json")]
    assert np.median(returns) > 0.5, returns


@pytest.mark.slow
def test_reduced_run_pairs_recomputed_in_float64(reduced):
    pairs = read_csv(reduced / "minigrid" / "pairs" / "original-g5.csv")
    assert len(pairs) == 2 * 6 and {r["test_grid"] for r in pairs} == {5, 6}
    for r in pairs:
        assert 0 <= r["cka"] <= 1 + 1e-9 and 0 <= r["jsd_bits"] <= 1 and -1 <= r["rank_correlation"] <= 1
        assert r["pair_group"] == rl.pair_colour_group(r["category_a"], r["category_b"])
    arrays = np.load(reduced / "minigrid" / "pairs" / "original-g5.npz")
    names = list(arrays["agents"])
    row = next(r for r in pairs if r["test_grid"] == 6 and r["agent_a"] == "s1" and r["agent_b"] == "s3")
    i, j = names.index("s1"), names.index("s3")
    sel = np.isin(arrays["g6/source"], [i, j])
    assert sel.sum() == row["n_states"]
    fa, fb = arrays["g6/features/s1"][sel], arrays["g6/features/s3"][sel]
    pa, pb = arrays["g6/probs/s1"][sel], arrays["g6/probs/s3"][sel]
    assert row["cka"] == pytest.approx(reference_cka(fa, fb), rel=1e-5)
    assert row["jsd_bits"] == pytest.approx(reference_jsd(pa, pb), rel=1e-5)
    assert row["rank_correlation"] == pytest.approx(np.mean([spearmanr(p, q).statistic for p, q in zip(pa, pb)]), rel=1e-5)
    # the saved features are the checkpoint's own outputs on the saved states
    net = rl.load_agent(reduced / "minigrid" / "agents" / "original-g5-s3.pt")
    np.testing.assert_allclose(rl.policy_outputs(net, arrays["g6/states"][sel])[0], fb, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_reduced_run_summary_and_figures(reduced):
    import matplotlib.image

    rows = read_csv(reduced / "minigrid" / "summary.csv")
    assert [(r["arch"], r["kind"], str(r["test_grid"])) for r in rows] == [
        (a, k, t) for a in ("original", "bottleneck") for k, t in (("panel", "5"), ("panel", "6"), ("average", "all"), ("pooled", "all"))
    ]
    pairs = [r for a in ("original", "bottleneck") for r in read_csv(reduced / "minigrid" / "pairs" / f"{a}-g5.csv")]
    for r in rows:
        for key in ("rho_cka_jsd", "rho_cka_rank"):
            assert -1 <= r[key] <= 1, (r, key)
        assert math.isfinite(r["slope_cka_jsd"]) and r["n_cka_undefined"] == 0
        if r["kind"] == "pooled":  # Spearman over all pairs of the network, recomputed with scipy
            mine = [p for p in pairs if p["arch"] == r["arch"]]
            assert r["n_pairs"] == 12
            assert r["rho_cka_jsd"] == pytest.approx(spearmanr([p["cka"] for p in mine], [p["jsd_bits"] for p in mine]).statistic, abs=1e-5)
    for arch in ("original", "bottleneck"):
        panel = [r["rho_cka_jsd"] for r in rows if r["arch"] == arch and r["kind"] == "panel"]
        average = next(r for r in rows if r["arch"] == arch and r["kind"] == "average")
        assert average["rho_cka_jsd"] == pytest.approx(np.mean(panel), abs=1e-5)
    assert "| original | average |" in (reduced / "minigrid" / "summary.md").read_text()
    for name in ("cka_vs_jsd", "cka_vs_rank"):
        image = matplotlib.image.imread(reduced / "figures" / "minigrid" / f"{name}.png")
        assert image.shape[0] > 400 and image.shape[1] > 400 and image[..., :3].std() > 0.05


@pytest.mark.slow
@pytest.mark.parametrize(("edit", "message"), [
    ({"train_grids": [7]}, r"train_grids\[0\]: 7 is not allowed\. Allowed: 5, 6, 8, 16"),
    ({"ppo": {"frames": 100, "lr_decay": 0.5}}, r"lr_decay"),
    ({"seeds": [0]}, r"seeds: needs at least 2 items"),  # pairs of seeds need at least 2
])
def test_bad_minigrid_config_is_one_clear_error(tmp_path, edit, message):
    import yaml

    config = yaml.safe_load((REPO / "config" / "experiments" / "minigrid_reduced.yaml").read_text())
    config["papers"]["minigrid"].update(edit)
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0 and re.search(message, result.stdout + result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "results").exists()
