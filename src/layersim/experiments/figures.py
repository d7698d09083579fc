"""Figures of the functional-similarity experiments (matplotlib, Agg; saved as :mod:`layersim.plots` saves)."""

from __future__ import annotations

import numpy as np

from layersim import plots
from layersim.plots import _pyplot as _plt


def _save(fig, path) -> None:
    plots._save(fig, path)
    _plt().close(fig)


def existence_figure(rows: list[dict], path, title: str = "") -> None:
    """Representational similarity (CKA/CCA) and function (JSD, rank correlation, accuracy) vs d_ratio."""
    plt = _plt()
    d = [r["d_ratio"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("cka_features", "-o"), ("cca_features", "--o"), ("cka_masked", "-s"), ("cca_masked", "--s")):
        axes[0].plot(d, [r[key] for r in rows], style, label=key)
    axes[0].set(xlabel="d_ratio (share of feature dims masked)", ylabel="similarity", ylim=(-0.05, 1.05), title="Representations")
    axes[0].legend(fontsize=8)
    for key, style in (("jsd_bits", "-o"), ("rank_correlation", "-s"), ("accuracy_net1", ":^"), ("accuracy_net2", ":v")):
        axes[1].plot(d, [r[key] for r in rows], style, label=key)
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].set(xlabel="d_ratio", ylabel="value", ylim=(-1.05, 1.05), title="Outputs (Net1 true labels, Net2 flipped)")
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "Existence proof (thesis Table 4.1)")
    _save(fig, path)


def lines_figure(series: dict, path, *, xlabel: str, panels: list[tuple[str, str]], title: str = "") -> None:
    """One panel per (key, label); one line per series name. ``series``: name → list of row dicts."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for name, rows in series.items():
            ax.plot([r[xlabel] for r in rows], [r[key] for r in rows], "-o", ms=3, label=name)
        ax.set(xlabel=xlabel, ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def scatter_panels(panels: list[dict], path, *, title: str = "", ncols: int | None = None) -> None:
    """Scatter panels with a least-squares line; each panel: x, y, xlabel, ylabel, groups (optional
    list of group labels per point), colors (optional group → colour), title (optional), and the
    legend shows slope and Spearman ρ."""
    from layersim.experiments.common import fit_line, spearman

    plt = _plt()
    ncols = ncols or min(len(panels), 4)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        x, y = np.asarray(panel["x"], float), np.asarray(panel["y"], float)
        groups = panel.get("groups") or ["pairs"] * len(x)
        for g in dict.fromkeys(groups):
            sel = np.array([gg == g for gg in groups])
            ax.scatter(x[sel], y[sel], s=14, label=g, alpha=0.8, color=(panel.get("colors") or {}).get(g))
        fit = panel.get("fit_mask")
        fx, fy = (x, y) if fit is None else (x[np.asarray(fit)], y[np.asarray(fit)])
        slope, intercept = fit_line(fx, fy)
        rho = spearman(fx, fy)
        if np.isfinite(slope):
            xs = np.linspace(np.nanmin(fx), np.nanmax(fx), 10)
            ax.plot(xs, slope * xs + intercept, "r-", lw=1, label=f"slope {slope:.3g}, ρ {rho:.3f}")
        ax.set(xlabel=panel["xlabel"], ylabel=panel["ylabel"])
        if panel.get("title"):
            ax.set_title(panel["title"], fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    if any(panel.get("title") for panel in panels):  # keep panel titles clear of the labels above
        fig.tight_layout(rect=(0, 0, 1, 0.96))
    _save(fig, path)


def confusion_figure(confusion, labels: list[str], path, *, title: str = "") -> None:
    """Row-normalised confusion matrix (row = true set, column = predicted) with its values
    (thesis Fig. 3.1); the colour scale runs from 0 to 1."""
    plt = _plt()
    confusion = np.asarray(confusion, float)
    share = confusion / confusion.sum(axis=1, keepdims=True)
    k = len(labels)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=5.5, color="black" if share[i, j] > 0.6 else "white")
    ax.set(xlabel="predicted set", ylabel="true set")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title or "Confusion matrix of the SVM over representation sets")
    _save(fig, path)


def tsne_figure(rows: list[dict], path, *, title: str = "") -> None:
    """One panel per test dataset of a joint 2-D t-SNE; points coloured by model (the same colour
    in every panel), the other panels' points in light grey. ``rows``: tested_on, model, x, y."""
    plt = _plt()
    tests = list(dict.fromkeys(r["tested_on"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colours = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    xy = np.array([[r["x"], r["y"]] for r in rows], float)
    fig, axes = plt.subplots(1, len(tests), figsize=(4.4 * len(tests), 4.4), squeeze=False)
    for ax, test in zip(axes[0], tests):
        ax.scatter(xy[:, 0], xy[:, 1], s=4, color="0.88", zorder=0)
        for m, model in enumerate(models):
            sel = np.array([r["tested_on"] == test and r["model"] == model for r in rows])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=7, color=colours(m % colours.N), label=model, zorder=1)
        ax.set(title=f"tested on {test}", xticks=[], yticks=[])
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.02, 0.5), title="model")
    fig.suptitle(title or "t-SNE of the representations, coloured by model")
    _save(fig, path)
