"""Every figure: CKA heatmaps (magma, 0–1, origin lower, as in the seed notebook), grids and series
of them, and the experiments' figures. Files are drawn without pyplot and written atomically."""

from __future__ import annotations

import os

import numpy as np

from layersim.errors import LayersimError
from layersim.io import atomic_write


def _subplots(*shape, figsize, layout=None, **kwargs):
    """A new figure and its axes, outside pyplot (no backend chosen, nothing left open)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*shape, **kwargs)


def thinned_ticks(names: list[str], max_labels: int = 12) -> tuple[list[int], list[str]]:
    """Positions and labels of at most ``max_labels`` evenly spaced layers (first and last kept).

    >>> thinned_ticks([f"l{i}" for i in range(30)], max_labels=4)
    ([0, 10, 19, 29], ['l0', 'l10', 'l19', 'l29'])
    """
    n = len(names)
    if n <= max_labels:
        return list(range(n)), list(names)
    pos = sorted({int(round(p)) for p in np.linspace(0, n - 1, max_labels)})
    return pos, [names[p] for p in pos]


def draw_heatmap(ax, matrix: np.ndarray, names_a: list[str], names_b: list[str], *, title: str = "", xlabel: str = "",
                 ylabel: str = "", max_labels: int = 12, tick_labels: bool = True, cmap: str = "magma",
                 vmax: float = 1.0):
    """Draw one CKA matrix (rows: layers of a on the y axis; columns: layers of b on x), from 0
    to ``vmax``. Undefined (NaN) entries are masked and drawn grey.
    """
    import matplotlib

    cmap = matplotlib.colormaps[cmap].with_extremes(bad="0.6")
    image = ax.imshow(np.ma.masked_invalid(matrix), origin="lower", cmap=cmap, vmin=0.0, vmax=vmax,
                      interpolation="nearest", aspect="auto")
    if tick_labels:
        for axis, names in ((ax.yaxis, names_a), (ax.xaxis, names_b)):
            axis.set_ticks(*thinned_ticks(list(names), max_labels), fontsize=6)
        ax.tick_params(axis="x", labelrotation=90)
    else:
        ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    return image


def _save(fig, path, title: str = "", **title_style) -> None:
    """Write ``fig`` to ``path`` atomically, with ``title`` above its panels if there is one."""
    if title:
        fig.suptitle(title, **title_style)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))


def heatmap(result, *, ax=None, title: str | None = None, max_labels: int = 12):
    """The pipeline's CKA heatmap (title ``CKA: a vs b``) of one similarity result; returns its
    matplotlib figure. ``result`` is :func:`layersim.compare_models`' DataArray or a result read with
    :func:`layersim.store.read_similarity`. With ``ax``, it draws into that axes (and its
    figure gets the colour bar) instead of a new pyplot figure.
    """
    import xarray as xr

    cka = result
    if isinstance(result, xr.Dataset):
        if "cka" not in result:
            raise LayersimError(f"this similarity result has no 'cka' variable (it holds {sorted(result.data_vars)}); pass a CKA result of the similarity step or of compare_models")
        cka = result["cka"]
    if not isinstance(cka, xr.DataArray) or cka.dims != ("layer_a", "layer_b"):
        raise LayersimError(f"a CKA heatmap needs an xarray result with dims (layer_a, layer_b), got {type(cka).__name__} {getattr(cka, 'dims', '')}; pass the result of compare_models or of the similarity step")
    attrs = {**cka.attrs, **getattr(result, "attrs", {})}
    a, b = attrs.get("model_a", "model a"), attrs.get("model_b", "model b")
    if ax is None:
        import matplotlib.pyplot as plt  # the user's backend (inline in a notebook)

        _, ax = plt.subplots(figsize=(6, 5))
    image = draw_heatmap(ax, np.asarray(cka.values, dtype=float), [str(n) for n in cka["layer_a"].values], [str(n) for n in cka["layer_b"].values], title=title or f"CKA: {a} vs {b}", xlabel=f"{b} layer", ylabel=f"{a} layer", max_labels=max_labels)
    ax.figure.colorbar(image, ax=ax, label="minibatch linear CKA")
    return ax.figure


def heatmap_figure(result, path: str | os.PathLike, *, title: str | None = None, max_labels: int = 12) -> None:
    """Save :func:`heatmap` of one similarity result (Dataset or DataArray) to ``path``."""
    fig, ax = _subplots(figsize=(6, 5))
    heatmap(result, ax=ax, title=title, max_labels=max_labels)
    _save(fig, path)


def grid_figure(results: dict[tuple[int, int], object], path: str | os.PathLike, *, row_labels: list, col_labels: list, row_title: str = "depth", col_title: str = "width", title: str = "") -> None:
    """A grid of self-similarity heatmaps, e.g. depth (rows) × width (columns), Nguyen et al. Fig. 1
    style. ``results`` maps ``(row_index, col_index)`` to a similarity result; missing cells stay blank."""
    nrows, ncols = len(row_labels), len(col_labels)
    fig, axes = _subplots(nrows, ncols, figsize=(2.4 * ncols + 1, 2.4 * nrows + 0.5), squeeze=False)
    image = None
    for i, j in np.ndindex(nrows, ncols):
        ax = axes[nrows - 1 - i][j]  # the first row label at the bottom, like a plot axis
        result = results.get((i, j))
        if result is None:
            ax.axis("off")
            continue
        image = draw_heatmap(ax, result["cka"].values, list(result["layer_a"].values), list(result["layer_b"].values), title=result.attrs.get("model_a", ""), tick_labels=False)
        if j == 0:
            ax.set_ylabel(f"{row_title} {row_labels[i]}", fontsize=9)
        if i == 0:
            ax.set_xlabel(f"{col_title} {col_labels[j]}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="minibatch linear CKA")
    _save(fig, path, title)


def metrics_figure(results: list, path: str | os.PathLike, *, max_labels: int = 12) -> None:
    """Heatmaps of several metrics for one model pair, side by side: each a Dataset with one
    ``(layer_a, layer_b)`` variable (``cka`` or ``value``). Similarities are drawn from 0 to 1,
    distances from 0 to their maximum with the colour map reversed: bright always means similar."""
    fig, axes = _subplots(1, len(results), figsize=(5.2 * len(results), 4.6), squeeze=False, layout="constrained")
    for ax, result in zip(axes[0], results):
        var = "cka" if "cka" in result else "value"
        matrix = result[var].values
        name = result.attrs.get("metric", var)
        style = {"title": name}
        if result.attrs.get("kind") == "distance":
            vmax = float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 1.0
            style = {"title": f"{name} (distance)", "cmap": "magma_r", "vmax": vmax or 1.0}
        image = draw_heatmap(ax, matrix, list(result["layer_a"].values), list(result["layer_b"].values),
                             xlabel=f"{result.attrs.get('model_b', 'b')} layer",
                             ylabel=f"{result.attrs.get('model_a', 'a')} layer", max_labels=max_labels, **style)
        fig.colorbar(image, ax=ax, shrink=0.8)
    _save(fig, path)


def series_figure(results: list, shares: list, labels: list[str], path: str | os.PathLike, *, title: str = "", max_labels: int = 12) -> None:
    """Nguyen et al. (2021) Fig. 1/2 style: the self-similarity heatmap of each model of a depth
    or width series (``results``) above its layers' first-PC share of variance (``shares``, of
    :func:`layersim.experiments.nguyen.read_pc_shares`; 0–1): where one PC dominates, CKA saturates."""
    k = len(results)
    fig, axes = _subplots(2, k, figsize=(2.9 * k + 1.2, 4.6), squeeze=False, gridspec_kw={"height_ratios": [3, 1.1]},
                          layout="constrained")
    for j, (result, share, label) in enumerate(zip(results, shares, labels)):
        names = list(result["layer_a"].values)
        image = draw_heatmap(axes[0][j], result["cka"].values, names, names, title=f"{label}\n{result.attrs.get('model_a', '')}", tick_labels=False)
        ax = axes[1][j]
        ax.plot(np.arange(len(names)), share["pc1_share"].sel(layer=names).values, color="C0", lw=1.2)
        ax.set(xlim=(-0.5, len(names) - 0.5), ylim=(0, 1))
        ax.set_xticks(*thinned_ticks(names, max(2, max_labels // 3)), fontsize=5, rotation=90)
        ax.tick_params(axis="y", labelsize=6)
    axes[0][0].set_ylabel("layer", fontsize=8)
    axes[1][0].set_ylabel("PC1 share", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="minibatch linear CKA")
    _save(fig, path, title, fontsize=10)


def block_structure_figure(rows: list[dict], path: str | os.PathLike, *, threshold: float, pc1_threshold: float, depth_width: int, width_depths: list[int]) -> None:
    """Block-structure size (``block_fraction``: the share of the layers in the
    :func:`layersim.experiments.nguyen.largest_block`, 0 without one) against depth (ResNets of width
    ``depth_width``) and against width (at each of ``width_depths``); one dot per seed, a line through the means."""
    fig, axes = _subplots(1, 2, figsize=(9, 3.6), layout="constrained")

    def series(ax, key, points, label, color):
        xs = sorted({p[key] for p in points})
        if not xs:
            return
        for p in points:
            ax.scatter(p[key], p["block_fraction"], s=14, color=color, alpha=0.6)
        means = [np.mean([p["block_fraction"] for p in points if p[key] == x]) for x in xs]
        ax.plot(xs, means, color=color, label=label)

    series(axes[0], "depth", [r for r in rows if r["width"] == depth_width], f"width ×{depth_width}", "C0")
    for c, d in enumerate(width_depths):
        series(axes[1], "width", [r for r in rows if r["depth"] == d], f"depth {d}", f"C{c + 1}")
    for ax, xlabel in zip(axes, ("depth", "width multiplier")):
        ax.set(xlabel=xlabel, ylim=(0, 1.05))
        ax.set_ylabel(f"block: CKA > {threshold:g}, PC1 share > {pc1_threshold:g}\n(fraction of layers)", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _save(fig, path, "Block structure vs depth and width", fontsize=10)


def identification_figure(rows: list[dict], path: str | os.PathLike, *, title: str = "") -> None:
    """Kornblith et al. (2019) Table 2 style: layer-identification accuracy per similarity index
    as bars (this run) with the paper's values as open markers, and the numbers as a table."""
    fig, (ax, tab) = _subplots(1, 2, figsize=(10, 0.35 * len(rows) + 1.6), gridspec_kw={"width_ratios": [1.4, 1]},
                               layout="constrained")
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r["accuracy"] for r in rows], color="C0", label="this run")
    ax.scatter([r["paper_accuracy"] for r in rows], y, facecolors="none", edgecolors="k", zorder=3, label="Kornblith et al. 2019")
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("identification accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    tab.axis("off")
    table = tab.table(cellText=[[r["label"], f"{r['accuracy']:.1f}", f"{r['paper_accuracy']:.1f}"] for r in rows], colLabels=["Index", "Accuracy", "Paper"], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.2)
    _save(fig, path, title, fontsize=10)


def existence_figure(rows: list[dict], path, title: str = "") -> None:
    """Representational similarity (CKA/CCA) and function (JSD, rank correlation, accuracy) vs d_ratio."""
    d = [r["d_ratio"] for r in rows]
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    lines = ((("cka_features", "-o"), ("cca_features", "--o"), ("cka_masked", "-s"), ("cca_masked", "--s")),
             (("jsd_bits", "-o"), ("rank_correlation", "-s"), ("accuracy_net1", ":^"), ("accuracy_net2", ":v")))
    for ax, panel in zip(axes, lines):
        for key, style in panel:
            ax.plot(d, [r[key] for r in rows], style, label=key)
        ax.legend(fontsize=8)
    axes[0].set(xlabel="d_ratio (share of feature dims masked)", ylabel="similarity", ylim=(-0.05, 1.05),
                title="Representations")
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].set(xlabel="d_ratio", ylabel="value", ylim=(-1.05, 1.05), title="Outputs (Net1 true labels, Net2 flipped)")
    _save(fig, path, title or "Existence proof (thesis Table 4.1)")


def lines_figure(series: dict, path, *, xlabel: str, panels: list[tuple[str, str]], title: str = "") -> None:
    """One panel per (key, label); one line per series name. ``series``: name → list of row dicts."""
    fig, axes = _subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for name, rows in series.items():
            ax.plot([r[xlabel] for r in rows], [r[key] for r in rows], "-o", ms=3, label=name)
        ax.set(xlabel=xlabel, ylabel=label)
        ax.legend(fontsize=8)
    _save(fig, path, title)


def scatter_panels(panels: list[dict], path, *, title: str = "", ncols: int | None = None) -> None:
    """Scatter panels with a least-squares line; each panel: x, y, xlabel, ylabel, groups (optional
    list of group labels per point), colors (optional group → colour), title (optional), and the
    legend shows slope and Spearman ρ."""
    from layersim.experiments.common import fit_line, spearman

    ncols = ncols or min(len(panels), 4)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = _subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        x, y = np.asarray(panel["x"], float), np.asarray(panel["y"], float)
        groups = np.array(panel.get("groups") or ["pairs"] * len(x))
        for g in dict.fromkeys(groups):
            sel = groups == g
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
    confusion = np.asarray(confusion, float)
    share = confusion / confusion.sum(axis=1, keepdims=True)
    k = len(labels)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = _subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    for (i, j), value in np.ndenumerate(share):
        colour = "black" if value > 0.6 else "white"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5, color=colour)
    ax.set(xlabel="predicted set", ylabel="true set")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title or "Confusion matrix of the SVM over representation sets")
    _save(fig, path)


def tsne_figure(rows: list[dict], path, *, title: str = "") -> None:
    """One panel per test dataset of a joint 2-D t-SNE; points coloured by model (the same colour
    in every panel), the other panels' points in light grey. ``rows``: tested_on, model, x, y."""
    import matplotlib

    tests = list(dict.fromkeys(r["tested_on"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colours = matplotlib.colormaps["tab10" if len(models) <= 10 else "tab20"]
    xy = np.array([[r["x"], r["y"]] for r in rows], float)
    fig, axes = _subplots(1, len(tests), figsize=(4.4 * len(tests), 4.4), squeeze=False)
    for ax, test in zip(axes[0], tests):
        ax.scatter(xy[:, 0], xy[:, 1], s=4, color="0.88", zorder=0)
        for m, model in enumerate(models):
            sel = np.array([r["tested_on"] == test and r["model"] == model for r in rows])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=7, color=colours(m % colours.N), label=model, zorder=1)
        ax.set(title=f"tested on {test}", xticks=[], yticks=[])
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.02, 0.5), title="model")
    _save(fig, path, title or "t-SNE of the representations, coloured by model")
