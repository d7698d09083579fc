"""Jobs of the thesis' MiniGrid PPO agents (§3.5)."""

from __future__ import annotations

from layersim.experiments.common import markdown_table
from layersim.experiments.minigrid import compare_agents, scatter_figure, summary_rows
from layersim.io import atomic_write, read_csv, write_csv, write_json, write_text
from layersim.jobs import job, log


@job
def minigrid_train(smk) -> None:
    """One agent's ``train_agent`` and mean return over ``eval_episodes`` → checkpoint + JSON."""
    import torch

    from layersim.experiments.ppo import category, run_episodes, save_agent, train_agent

    p, w = smk.params, smk.wildcards
    torch.set_num_threads(max(1, smk.threads))
    grid, seed = int(w.grid), int(w.seed)
    net, history = train_agent(w.arch, grid, seed, dict(p.ppo), bottleneck=p.bottleneck)
    _, returns = run_episodes(net, grid, p.eval_episodes, seed=10_000 + seed)
    mean_return = float(returns.mean())
    log.info("%s on %dx%d, seed %d: mean return %.3f over %d episodes (%s)", w.arch, grid, grid, seed, mean_return, len(returns), category(mean_return))
    save_agent(net, smk.output.checkpoint)
    write_json({"arch": w.arch, "grid": grid, "seed": seed, "bottleneck": p.bottleneck, "ppo": dict(p.ppo), "eval_episodes": p.eval_episodes, "mean_return": mean_return, "category": category(mean_return), "history": history}, smk.output.record)


@job
def minigrid_compare(smk) -> None:
    """:func:`layersim.experiments.minigrid.compare_agents` of one (arch, grid)'s seeds → CSV + npz."""
    import json

    import numpy as np
    import torch

    from layersim.experiments.ppo import load_agent

    p, w = smk.params, smk.wildcards
    torch.set_num_threads(max(1, smk.threads))
    agents, returns = {}, {}
    for ckpt, record in zip(smk.input.checkpoints, smk.input.records):
        info = json.loads(open(record).read())
        name = f"s{info['seed']}"
        agents[name], returns[name] = load_agent(ckpt), info["mean_return"]
    rows, arrays = compare_agents(agents, returns, list(p.test_grids), episodes=p.rollout_episodes, seed=p.rollout_seed)
    rows = [{"arch": w.arch, "train_grid": int(w.grid), **r} for r in rows]
    write_csv(rows, smk.output.pairs, comments=[f"MiniGrid agents ({w.arch}, trained on Empty-{w.grid}x{w.grid}): every pair of seeds on each test grid, pooled rollout states", "cka: linear CKA of the feature layer; jsd_bits: mean JSD of the action distributions; rank_correlation: mean per-state Spearman of the action probabilities"])
    atomic_write(smk.output.arrays, lambda tmp: np.savez_compressed(tmp, **arrays))


@job
def minigrid_summary(smk) -> None:
    """All pairs → :func:`layersim.experiments.minigrid.summary_rows` (CSV + Markdown) and figures."""
    pairs = [r for path in smk.input.pairs for r in read_csv(path)]
    rows = summary_rows(pairs)
    for r in rows:
        log.info("%s %s (train %s, test %s): %d pairs, rho(CKA, JSD) %.3f, rho(CKA, rank) %.3f", r["arch"], r["kind"], r["train_grid"], r["test_grid"], r["n_pairs"], r["rho_cka_jsd"], r["rho_cka_rank"])
    write_csv(rows, smk.output.table, comments=["Spearman rho and least-squares slope of CKA vs JSD and CKA vs per-state rank correlation (thesis Table 3.1: MiniGrid -0.721 / 0.58, with bottleneck -0.781 / 0.602)"])
    write_text(smk.output.markdown, markdown_table(rows, ["arch", "kind", "train_grid", "test_grid", "n_pairs", "rho_cka_jsd", "slope_cka_jsd", "rho_cka_rank", "slope_cka_rank"]))
    scatter_figure(pairs, smk.output.jsd_figure, y="jsd_bits", ylabel="JSD of action distributions (bits)", title="MiniGrid agents: CKA of features vs JSD of policies (thesis Fig. 3.6 / 3.8)")
    scatter_figure(pairs, smk.output.rank_figure, y="rank_correlation", ylabel="rank correlation of action probabilities", title="MiniGrid agents: CKA of features vs rank correlation of policies (thesis appendix Fig. 1 / 2)")
