"""Thesis §3.5 (Figures 3.6–3.8, Table 3.1 MiniGrid rows): CKA of PPO agents' features vs JSD and
rank correlation of their action distributions, on the pooled rollout states of each pair of
agents (method: docs/papers.md).
"""

from __future__ import annotations

import logging
from itertools import combinations, product

import numpy as np

from layersim.errors import LayersimError
from layersim.experiments.common import fit_line, spearman

log = logging.getLogger("layersim")

COLOURS = {"both optimal": "tab:green", "optimal vs mediocre": "magenta", "optimal vs poor": "tab:blue", "other": "tab:orange"}


def compare_agents(agents: dict, returns: dict, test_grids: list[int], *, episodes: int, seed: int) -> tuple[list[dict], dict]:
    """Every pair of ``agents`` (name → :class:`~layersim.experiments.ppo.AgentNet` of one architecture
    and training grid; ``returns``: name → mean return on the training grid) on every test grid.

    Returns one row per (test grid, pair) and the arrays behind them: per test grid ``states``
    (every agent's rollout states), ``source`` (the index, in sorted-name order, of the agent that
    visited each state) and each agent's ``features`` / ``probs`` on all those states.
    """
    from layersim.metrics import METRICS, distribution_rank_correlation, jsd, value_or_nan
    from layersim.experiments.ppo import category, pair_colour_group, policy_outputs, run_episodes

    names = sorted(agents)
    if len(names) < 2:
        raise LayersimError(f"comparing agents needs at least 2 (seeds); got {len(names)}: {names}")
    rows, arrays = [], {"agents": np.array(names)}
    for grid in test_grids:
        visited = [run_episodes(agents[name], grid, episodes, seed=seed + 7919 * k)[0]
                   for k, name in enumerate(names)]
        states = np.concatenate(visited)
        source = np.repeat(np.arange(len(names)), [len(s) for s in visited])
        outputs = {name: policy_outputs(agents[name], states) for name in names}
        arrays[f"g{grid}/states"], arrays[f"g{grid}/source"] = states, source
        for name in names:
            arrays[f"g{grid}/features/{name}"], arrays[f"g{grid}/probs/{name}"] = outputs[name]
        for i, j in combinations(range(len(names)), 2):
            a, b = names[i], names[j]
            sel = (source == i) | (source == j)
            (fa, pa), (fb, pb) = outputs[a], outputs[b]
            cka, reason = value_or_nan(METRICS["linear_cka"], fa[sel], fb[sel], quiet=False)
            if reason:
                log.warning("test grid %d, %s vs %s: CKA undefined (%s); the pair is written with cka NaN and left out of the correlations", grid, a, b, reason)
            cat_a, cat_b = category(returns[a]), category(returns[b])
            rows.append({
                "test_grid": grid, "agent_a": a, "agent_b": b, "return_a": returns[a], "return_b": returns[b],
                "category_a": cat_a, "category_b": cat_b, "pair_group": pair_colour_group(cat_a, cat_b),
                "n_states": int(sel.sum()), "cka": cka, "jsd_bits": jsd(pa[sel], pb[sel]),
                "rank_correlation": distribution_rank_correlation(pa[sel], pb[sel]),
            })
            log.info("test grid %d, %s vs %s (%s): %d states, CKA %.3f, JSD %.3f bits, rank corr %.3f", grid, a, b, rows[-1]["pair_group"], rows[-1]["n_states"], cka, rows[-1]["jsd_bits"], rows[-1]["rank_correlation"])
    return rows, arrays


def summary_rows(pairs: list[dict]) -> list[dict]:
    """Spearman ρ and least-squares slope of CKA vs JSD and CKA vs rank correlation per panel
    (architecture, training grid, test grid), then per architecture ``average`` (mean over
    panels, as Table 3.1) and ``pooled`` (all its pairs at once)."""
    def stats(rows):
        x = [r["cka"] for r in rows]
        out = {"n_pairs": len(rows), "n_cka_undefined": int(sum(not np.isfinite(v) for v in x))}
        for key, name in (("jsd_bits", "jsd"), ("rank_correlation", "rank")):
            y = [r[key] for r in rows]
            out[f"rho_cka_{name}"] = spearman(x, y)
            out[f"slope_cka_{name}"] = fit_line(x, y)[0]
        return out

    panels = {}
    for r in pairs:
        panels.setdefault((r["arch"], r["train_grid"], r["test_grid"]), []).append(r)
    out = []
    for arch in dict.fromkeys(r["arch"] for r in pairs):
        mine = [(key, rows) for key, rows in panels.items() if key[0] == arch]
        panel_rows = [{"arch": arch, "kind": "panel", "train_grid": str(tr), "test_grid": str(te), **stats(rows)} for (_, tr, te), rows in mine]
        out += panel_rows
        average = {"arch": arch, "kind": "average", "train_grid": "all", "test_grid": "all", "n_pairs": sum(p["n_pairs"] for p in panel_rows), "n_cka_undefined": sum(p["n_cka_undefined"] for p in panel_rows)}
        for key in ("rho_cka_jsd", "slope_cka_jsd", "rho_cka_rank", "slope_cka_rank"):
            values = [p[key] for p in panel_rows if np.isfinite(p[key])]
            if len(values) < len(panel_rows):
                log.warning("%s: %d of %d panels have no defined %s (too few pairs or a constant side); the average is over the rest", arch, len(panel_rows) - len(values), len(panel_rows), key)
            average[key] = float(np.mean(values)) if values else float("nan")
        out.append(average)
        out.append({"arch": arch, "kind": "pooled", "train_grid": "all", "test_grid": "all", **stats([r for _, rows in mine for r in rows])})
    return out


def scatter_figure(pairs: list[dict], path, *, y: str, ylabel: str, title: str) -> None:
    """Thesis Figures 3.6 / 3.8 (y = JSD) and appendix Figures 1–2 (y = rank correlation): a panel
    per (architecture, test grid, training grid), points coloured by the pair's categories."""
    from layersim.plots import scatter_panels

    archs = list(dict.fromkeys(r["arch"] for r in pairs))
    trains = sorted({r["train_grid"] for r in pairs})
    tests = sorted({r["test_grid"] for r in pairs})
    panels = []
    for arch, te, tr in product(archs, tests, trains):
        sel = [r for r in pairs if (r["arch"], r["train_grid"], r["test_grid"]) == (arch, tr, te)]
        panels.append({
            "x": [r["cka"] for r in sel], "y": [r[y] for r in sel], "groups": [r["pair_group"] for r in sel],
            "colors": COLOURS, "title": f"{arch}: train {tr}×{tr}, test {te}×{te}",
            "xlabel": "linear CKA (features)", "ylabel": ylabel,
        })
    scatter_panels(panels, path, title=title, ncols=len(trains) if len(trains) > 1 else len(tests))
