"""Rule entry points of the functional-similarity experiments (re-exported by layersim.rules).

Each takes the ``snakemake`` object of a ``script:`` rule, like the other functions of
:mod:`layersim.rules`, and calls one function of an experiment module.
"""

from __future__ import annotations

import logging

from layersim.rules import _device, _rule

log = logging.getLogger("layersim")


@_rule
def johnson_table(smk) -> None:
    """Rule ``johnson_table``: :func:`layersim.experiments.johnson.johnson_rows` → CSV + Markdown."""
    from layersim.experiments.common import _write_text, write_csv
    from layersim.experiments.johnson import johnson_rows, verdict

    rows = johnson_rows(tuple(smk.params.epsilons))
    write_csv(rows, smk.output.table, comments=["Johnson (2019) Example 3.1: hidden layers of two ReLU networks, y = W2 ReLU(W1 x)", "see layersim.experiments.johnson and docs/metrics.md"])
    lines = ["| construction | inputs | subspace match (ε=0) | linear CKA | CCA mean ρ | Procrustes | same function? | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cca = "undefined (n < 3)" if r["cca_mean_rho"] != r["cca_mean_rho"] else f"{r['cca_mean_rho']:.3f}"
        lines.append(f"| {r['construction']} | {r['n_inputs']} | {r['subspace_match_eps0']:.2f} ({r['match_sets_eps0']}) | {r['linear_cka']:.3f} | {cca} | {r['procrustes']:.3g} | {'yes' if r['same_function'] else 'no'} | {verdict(r)} |")
        log.info(verdict(r))
    _write_text(smk.output.markdown, "\n".join(lines) + "\n")
__all__ = ['johnson_table']


def _md_table(rows: list[dict], keys: list[str]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@_rule
def existence_proof(smk) -> None:
    """Rule ``existence_proof``: :func:`layersim.experiments.existence.existence_rows` on a layer
    of the frozen base's store → CSV, Markdown and figure."""
    from layersim.experiments.common import _write_text, write_csv
    from layersim.experiments.existence import existence_rows
    from layersim.experiments.figures import existence_figure
    from layersim.store import ActivationStore

    p = smk.params
    store = ActivationStore(smk.input.store)
    features, labels = store.read(p.layer), store.labels
    rows = existence_rows(features, labels, int(labels.max()) + 1, d_ratios=list(p.d_ratios), flip_fraction=p.flip_fraction, head_fraction=p.head_fraction, steps=p.head_steps, seed=p.seed)
    for r in rows:
        log.info("d=%.2f CKA(features)=%.3f CKA(masked)=%.3f JSD=%.3f rank=%.3f acc1=%.3f acc2=%.3f", r["d_ratio"], r["cka_features"], r["cka_masked"], r["jsd_bits"], r["rank_correlation"], r["accuracy_net1"], r["accuracy_net2"])
    write_csv(rows, smk.output.table, comments=[f"existence proof (thesis Table 4.1): base {store.name}, layer {p.layer}, flip_fraction {p.flip_fraction}"])
    _write_text(smk.output.markdown, _md_table(rows, ["d_ratio", "cka_features", "cca_features", "cka_masked", "cca_masked", "jsd_bits", "rank_correlation", "accuracy_net1", "accuracy_net2"]))
    existence_figure(rows, smk.output.figure, title=f"Existence proof: frozen {store.name} ({p.layer}), Net2 with {p.flip_fraction:.0%} labels flipped")


__all__ += ["existence_proof"]


@_rule
def train_epochs(smk) -> None:
    """Rule ``train_epochs``: :func:`layersim.train.train_torch` saving a checkpoint at every
    configured epoch (one output per epoch, so that extraction fans out over them)."""
    import re as _re

    from layersim.data import load_dataset
    from layersim.train import train_torch

    epoch_paths = {int(_re.search(r"e(\d+)\.pt$", str(p)).group(1)): str(p) for p in smk.output.checkpoints}
    dataset = load_dataset(dict(smk.params.dataset))
    train_torch(dict(smk.params.arch), dict(smk.params.train), dataset, seed=int(smk.wildcards.seed), checkpoint=epoch_paths[max(epoch_paths)], history=smk.output.history, threads=smk.threads, epoch_checkpoints=epoch_paths, device=_device(smk))


@_rule
def checkpoint_compare(smk) -> None:
    """Rule ``checkpoint_compare``: :func:`layersim.experiments.checkpoints.compare_with_final`
    over the checkpoints of one instance → CSV."""
    import re as _re

    from layersim.experiments.checkpoints import compare_with_final
    from layersim.experiments.common import write_csv

    paths = {int(_re.search(r"-e(\d+)\.zarr$", str(p)).group(1)): str(p) for p in smk.input.stores}
    rows = compare_with_final(paths, layers=smk.params.layers, max_samples=smk.params.max_samples)
    rows = [{"model": smk.wildcards.model, "seed": int(smk.wildcards.seed), "lr": smk.params.lr, **r} for r in rows]
    for r in rows:
        log.info("epoch %d %s: CKA %.3f JSD %.3f", r["epoch"], r["layer"], r["cka"], r["jsd_bits"])
    write_csv(rows, smk.output.table)


@_rule
def checkpoints_summary(smk) -> None:
    """Rule ``checkpoints_summary``: all instances' tables → one CSV and the figure (CKA and
    JSD against epoch, CKA against JSD; one line per model / learning rate)."""
    from layersim.experiments.common import read_csv, spearman, write_csv
    from layersim.experiments.figures import lines_figure, scatter_panels

    rows = [r for p in smk.input.tables for r in read_csv(p)]
    write_csv(rows, smk.output.table)
    layer = rows[0]["layer"]
    series = {}
    for r in rows:
        if r["layer"] == layer:
            series.setdefault(f"{r['model']} s{r['seed']} lr={r['lr']:g}", []).append(r)
    lines_figure(series, smk.output.figure, xlabel="epoch", panels=[("cka", f"linear CKA with the final model ({layer})"), ("jsd_bits", "JSD with the final model (bits)")], title="Checkpoints over training vs the final model (thesis Fig. 3.5)")
    sel = [r for r in rows if r["layer"] == layer]
    scatter_panels([{"x": [r["cka"] for r in sel], "y": [r["jsd_bits"] for r in sel], "xlabel": f"CKA ({layer})", "ylabel": "JSD (bits)", "groups": [f"lr={r['lr']:g}" for r in sel]}], smk.output.scatter, title="CKA vs JSD of checkpoints against the final model")
    log.info("Spearman(CKA, JSD) over all checkpoints: %.3f", spearman([r["cka"] for r in sel], [r["jsd_bits"] for r in sel]))


__all__ += ["train_epochs", "checkpoint_compare", "checkpoints_summary"]


@_rule
def ding_benchmark(smk) -> None:
    """Rule ``ding_benchmark``: :mod:`layersim.experiments.ding` over the seeds of one model →
    pair tables, the Spearman summary and the specificity / sensitivity figures."""
    import re as _re

    from threadpoolctl import threadpool_limits

    from layersim.experiments import ding
    from layersim.experiments.common import write_csv
    from layersim.experiments.figures import scatter_panels
    from layersim.store import ActivationStore

    p = smk.params
    rows_ = slice(0, p.max_samples)
    reps, pc_reps, labels = {}, {}, None
    for path in smk.input.stores:
        store = ActivationStore(path)
        labels = store.labels[rows_] if labels is None else labels
        seed = _re.search(r"-s(\d+)-", store.name).group(1)
        for layer in store.layers:
            if _re.search(p.layers, layer):
                reps[f"s{seed}:{layer}"] = store.read(layer, rows_)
        pc_layer = next(l for l in store.layers if _re.search(p.pc_layer, l))
        pc_reps[f"s{seed}:{pc_layer}"] = store.read(pc_layer, rows_)
    metrics = list(p.metrics)
    with threadpool_limits(limits=max(1, smk.threads), user_api="blas"):
        depth_pairs, depth_summary = ding.depth_benchmark(reps, labels, metrics)
        pc_rows, pc_summary = ding.pc_deletion_benchmark(pc_reps, labels, metrics, list(p.pc_deletions))
    write_csv(depth_pairs, smk.output.depth)
    write_csv(pc_rows, smk.output.pc_deletion)
    summary = depth_summary + pc_summary
    for r in summary:
        log.info("%s %s: rho %.3f (pooled %.3f)", r["benchmark"], r["metric"], r["spearman_rho_mean_over_references"], r["spearman_rho_all_pairs"])
    write_csv(summary, smk.output.summary, comments=["Spearman rho between metric distance and |probe accuracy difference| (layer_depth) or probe accuracy drop (pc_deletion)"])
    scatter_panels([{"x": [r[m] for r in depth_pairs], "y": [r["abs_probe_difference"] for r in depth_pairs], "xlabel": f"{m} distance", "ylabel": "|Δ probe accuracy|"} for m in metrics], smk.output.depth_figure, title="Layer depth / seeds (specificity): distance vs probe-accuracy difference")
    scatter_panels([{"x": [r[m] for r in pc_rows], "y": [r["probe_drop"] for r in pc_rows], "xlabel": f"{m} distance to original", "ylabel": "probe accuracy drop", "groups": [r["representation"] for r in pc_rows]} for m in metrics], smk.output.pc_figure, title="Principal-component deletion (sensitivity): distance vs accuracy drop")


__all__ += ["ding_benchmark"]


# --- MiniGrid PPO agents (thesis §3.5): layersim.rl and layersim.experiments.minigrid


@_rule
def minigrid_train(smk) -> None:
    """Rule ``minigrid_train``: :func:`layersim.rl.train_agent` for one (architecture, grid,
    seed), then its mean return R over ``eval_episodes`` on the training grid → checkpoint + JSON."""
    import torch

    from layersim.experiments.common import write_json
    from layersim.rl import category, run_episodes, save_agent, train_agent

    p, w = smk.params, smk.wildcards
    torch.set_num_threads(max(1, smk.threads))
    grid, seed = int(w.grid), int(w.seed)
    net, history = train_agent(w.arch, grid, seed, dict(p.ppo), bottleneck=p.bottleneck)
    _, returns = run_episodes(net, grid, p.eval_episodes, seed=10_000 + seed)
    mean_return = float(returns.mean())
    log.info("%s on %dx%d, seed %d: mean return %.3f over %d episodes (%s)", w.arch, grid, grid, seed, mean_return, len(returns), category(mean_return))
    save_agent(net, smk.output.checkpoint)
    write_json({"arch": w.arch, "grid": grid, "seed": seed, "bottleneck": p.bottleneck, "ppo": dict(p.ppo), "eval_episodes": p.eval_episodes, "mean_return": mean_return, "category": category(mean_return), "history": history}, smk.output.record)


@_rule
def minigrid_compare(smk) -> None:
    """Rule ``minigrid_compare``: :func:`layersim.experiments.minigrid.compare_agents` over the
    seeds of one (architecture, training grid) → pairs CSV + the features/probabilities (npz)."""
    import json
    import os

    import numpy as np
    import torch

    from layersim.experiments.common import write_csv
    from layersim.experiments.minigrid import compare_agents
    from layersim.rl import load_agent

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
    tmp = smk.output.arrays + ".partial.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, smk.output.arrays)


@_rule
def minigrid_summary(smk) -> None:
    """Rule ``minigrid_summary``: all pairs → Spearman ρ / slopes per panel, averaged per
    architecture (Table 3.1's MiniGrid rows), and the CKA-vs-JSD / CKA-vs-rank figures."""
    from layersim.experiments.common import _write_text, read_csv, write_csv
    from layersim.experiments.minigrid import scatter_figure, summary_rows

    pairs = [r for path in smk.input.pairs for r in read_csv(path)]
    rows = summary_rows(pairs)
    for r in rows:
        log.info("%s %s (train %s, test %s): %d pairs, rho(CKA, JSD) %.3f, rho(CKA, rank) %.3f", r["arch"], r["kind"], r["train_grid"], r["test_grid"], r["n_pairs"], r["rho_cka_jsd"], r["rho_cka_rank"])
    write_csv(rows, smk.output.table, comments=["Spearman rho and least-squares slope of CKA vs JSD and CKA vs per-state rank correlation (thesis Table 3.1: MiniGrid -0.721 / 0.58, with bottleneck -0.781 / 0.602)"])
    _write_text(smk.output.markdown, _md_table(rows, ["arch", "kind", "train_grid", "test_grid", "n_pairs", "rho_cka_jsd", "slope_cka_jsd", "rho_cka_rank", "slope_cka_rank"]))
    scatter_figure(pairs, smk.output.jsd_figure, y="jsd_bits", ylabel="JSD of action distributions (bits)", title="MiniGrid agents: CKA of features vs JSD of policies (thesis Fig. 3.6 / 3.8)")
    scatter_figure(pairs, smk.output.rank_figure, y="rank_correlation", ylabel="rank correlation of action probabilities", title="MiniGrid agents: CKA of features vs rank correlation of policies (thesis appendix Fig. 1 / 2)")


__all__ += ["minigrid_train", "minigrid_compare", "minigrid_summary"]


@_rule
def architectures_init(smk) -> None:
    """Rule ``architectures_init``: the untrained copy of a model — :func:`layersim.train.train_torch`
    with 0 epochs, i.e. the same seeded initialisation the trained instance starts from."""
    from layersim.data import load_dataset
    from layersim.train import train_torch

    dataset = load_dataset(dict(smk.params.dataset))
    train_torch(dict(smk.params.arch), {**dict(smk.params.train), "epochs": 0}, dataset, seed=int(smk.wildcards.seed), checkpoint=smk.output.checkpoint, history=smk.output.history, threads=smk.threads, device=_device(smk))


@_rule
def architectures_pairs(smk) -> None:
    """Rule ``architectures_pairs``: :func:`layersim.experiments.architectures.pair_rows` over the
    trained (and untrained) stores → one CSV row per pair."""
    from threadpoolctl import threadpool_limits

    from layersim.experiments.architectures import pair_rows
    from layersim.experiments.common import write_csv

    p = smk.params
    groups = {"trained": list(smk.input.trained)}
    if smk.input.untrained:
        groups["untrained"] = list(smk.input.untrained)
    with threadpool_limits(limits=max(1, smk.threads), user_api="blas"):
        rows = pair_rows(groups, layer=p.layer, metrics=list(p.metrics), max_samples=p.max_samples)
    for r in rows:
        log.info("%s %s vs %s: %s JSD %.3f rank %.3f", r["group"], r["a"], r["b"], " ".join(f"{m} {r[m]:.3f}" for m in p.metrics), r["jsd_bits"], r["rank_correlation"])
    write_csv(rows, smk.output.table, comments=[f"thesis §3.3 (Fig. 3.4): every pair of instances within a group; metrics of layer {p.layer!r}, JSD (bits) and confidence rank correlation of the outputs", f"samples: first {p.max_samples or 'all'} of the evaluation split"])


@_rule
def architectures_summary(smk) -> None:
    """Rule ``architectures_summary``: the pairs → Table 3.1 (CSV + Markdown) and the scatter
    figure (one row per metric: the metric against JSD and against rank correlation)."""
    from layersim.experiments.architectures import FUNCTIONAL, correlation_rows, markdown_table
    from layersim.experiments.common import _write_text, read_csv, write_csv
    from layersim.experiments.figures import scatter_panels

    pairs = read_csv(smk.input.pairs)
    metrics = list(smk.params.metrics)
    rows = correlation_rows(pairs, metrics)
    for r in rows:
        log.info("%s vs %s: rho %.3f over %d trained pairs (thesis %s)", r["metric"], r["functional"], r["spearman_rho"], r["n_pairs"], r["thesis_rho"] or "-")
    write_csv(rows, smk.output.table, comments=["thesis Table 3.1 over the trained pairs: Spearman rho and least-squares slope of each functional measure on each metric; spearman_rho_all includes the untrained pairs", "procrustes is a distance (0 = identical): its signs are the opposite of the similarities'"])
    _write_text(smk.output.markdown, markdown_table(rows))
    labels = {"jsd_bits": "JSD of predictions (bits)", "rank_correlation": "confidence rank correlation"}
    panels = [
        {
            "x": [r[m] for r in pairs],
            "y": [r[f] for r in pairs],
            "xlabel": f"{m} ({smk.params.layer})",
            "ylabel": labels[f],
            "groups": [f"{r['group']} pairs" for r in pairs],
            "fit_mask": [r["group"] == "trained" for r in pairs],
        }
        for m in metrics
        for f in FUNCTIONAL
    ]
    scatter_panels(panels, smk.output.figure, ncols=len(FUNCTIONAL), title="Representational vs functional similarity across architectures (thesis Fig. 3.4); line and ρ over the trained pairs")


__all__ += ["architectures_init", "architectures_pairs", "architectures_summary"]


# --- Representation sets (thesis §3.1, Figs. 3.1 and 3.2): layersim.experiments.representation_sets.


@_rule
def representation_train(smk) -> None:
    """Rule ``representation_train``: one model of the representation-set experiment, trained on
    the dataset of wildcard ``trained_on`` (:func:`layersim.train.train_torch`); ``untrained``
    saves the seeded initialisation (0 epochs) built for the first training dataset."""
    from layersim.experiments.representation_sets import UNTRAINED, load_set_dataset
    from layersim.train import train_torch

    trained_on = smk.wildcards.trained_on
    dataset = load_set_dataset(dict(smk.params.dataset), where=f"functional_papers.representation_sets.datasets.{smk.params.dataset_name}")
    train = dict(smk.params.train)
    if trained_on == UNTRAINED:
        train["epochs"] = 0
    train_torch(dict(smk.params.arch), train, dataset, seed=int(smk.wildcards.seed), checkpoint=smk.output.checkpoint, history=smk.output.history, threads=smk.threads, device=_device(smk))


@_rule
def representation_extract(smk) -> None:
    """Rule ``representation_extract``: one model's features at the configured layer (and its
    logits) on the sampled evaluation images of one test dataset → an activation store."""
    from layersim.experiments.representation_sets import RepresentationSetError, feature_layer, load_set_dataset, sample_rows, set_label
    from layersim.extract import overlap_writes, torch_layer_batches
    from layersim.models.torch import layer_names
    from layersim.rules import config_hash
    from layersim.store import write_activations
    from layersim.train import load_torch_checkpoint

    import torch

    p, w = smk.params, smk.wildcards
    torch.set_num_threads(max(1, smk.threads))
    where = f"functional_papers.representation_sets.datasets.{w.tested_on}"
    dataset = load_set_dataset(dict(p.dataset), where=where)
    model, state = load_torch_checkpoint(smk.input.checkpoint)
    channels = dataset.image_shape[0]
    if channels != state["in_channels"]:
        raise RepresentationSetError(f"{where} has {channels}-channel images but the model {w.trained_on}-s{w.seed} takes {state['in_channels']}; set its `channels` to {state['in_channels']}")
    layer = feature_layer(layer_names(model), p.layer)
    rows = sample_rows(len(dataset.eval), p.samples_per_set, p.seed, where="functional_papers.representation_sets.samples_per_set")
    images = dataset.eval.images[rows]
    attrs = {
        "model": f"{w.trained_on}-s{w.seed}", "trained_on": w.trained_on, "tested_on": w.tested_on, "seed": int(w.seed),
        "set": set_label(w.trained_on, w.tested_on, int(w.seed)), "feature_layer": layer, "dataset": dataset.name,
        "split": "eval", "framework": "torch", "arch": state["arch"], "epoch": state["epoch"],
        "config_hash": config_hash(p.dataset, p.samples_per_set, p.seed),
    }
    log.info("%s: layer %s on %d images of %s", attrs["set"], layer, len(rows), dataset.name)
    device = _device(smk)
    write_activations(
        smk.output.store, torch_layer_batches(model, images, p.batch_size, layers=[layer, "logits"], device=device),
        sample_id=dataset.eval.sample_id[rows], labels=dataset.eval.labels[rows], attrs=attrs, overlap=overlap_writes(device, smk.threads),
    )


def _representation_sets(paths) -> list[dict]:
    """The stores of the experiment as sets: label, trained_on, tested_on, seed, features, sample_id."""
    from layersim.store import ActivationStore

    sets = []
    for path in paths:
        store = ActivationStore(path)
        a = store.attrs
        sets.append({"label": a["set"], "trained_on": a["trained_on"], "tested_on": a["tested_on"], "seed": int(a["seed"]), "model": a["model"], "features": store.read(a["feature_layer"]), "sample_id": store.sample_id, "layer": a["feature_layer"]})
    return sets


@_rule
def representation_svm(smk) -> None:
    """Rule ``representation_svm``: :func:`layersim.experiments.representation_sets.classify_sets`
    over all sets → confusion CSV (counts), per-set and overall summaries, confusion figure."""
    from threadpoolctl import threadpool_limits

    from layersim.experiments import representation_sets as rs
    from layersim.experiments.common import write_csv
    from layersim.experiments.figures import confusion_figure

    p = smk.params
    sets = _representation_sets(smk.input.stores)
    X, y, labels = rs.build_set_matrix(sets)
    with threadpool_limits(limits=max(1, smk.threads), user_api="blas"):
        result = rs.classify_sets(X, y, test_fraction=p.test_fraction, C=p.C, max_iter=p.max_iter, seed=p.seed)
    if not result["converged"]:
        log.warning("the linear SVM did not converge in %d iterations (raise svm_max_iter)", p.max_iter)
    confusion = result["confusion"]
    write_csv([{"true_set": labels[i], **{labels[j]: int(confusion[i, j]) for j in range(len(labels))}} for i in range(len(labels))], smk.output.confusion, comments=["confusion matrix of the linear SVM (one-vs-rest): counts of test representations, row = true set, column = predicted set", f"layer {sets[0]['layer']}; {len(y)} representations, test fraction {p.test_fraction}, split seed {p.seed}"])
    summary, rows = rs.confusion_summary(confusion, sets)
    summary = {**summary, "layer": sets[0]["layer"], "features": X.shape[1], "n_train": len(y) - len(result["test_index"]), "converged": result["converged"]}
    write_csv(rows, smk.output.per_set)
    write_csv([summary], smk.output.summary, comments=["same_model / same_test_dataset: share of test representations predicted as a set of the true model (trained_on, seed) / of the true test dataset"])
    log.info("accuracy %.3f (mean recall %.3f, range %.3f–%.3f); predicted the right model %.3f, the right test dataset %.3f", summary["accuracy"], summary["mean_recall"], summary["min_recall"], summary["max_recall"], summary["same_model"], summary["same_test_dataset"])
    confusion_figure(confusion, labels, smk.output.figure, title=f"SVM over {len(labels)} representation sets ({sets[0]['layer']}): accuracy {summary['accuracy']:.2f}")


@_rule
def representation_tsne(smk) -> None:
    """Rule ``representation_tsne``: one joint t-SNE of ``tsne_per_set`` sampled representations
    of every set → coordinates CSV and the figure (a panel per test dataset, coloured by model)."""
    from threadpoolctl import threadpool_limits

    from layersim.experiments import representation_sets as rs
    from layersim.experiments.common import write_csv
    from layersim.experiments.figures import tsne_figure

    p = smk.params
    sets = _representation_sets(smk.input.stores)
    picked = []
    for s in sets:
        rows = rs.sample_rows(len(s["features"]), p.per_set, p.seed, where="functional_papers.representation_sets.tsne_per_set")
        picked.append({**s, "features": s["features"][rows], "sample_id": s["sample_id"][rows]})
    X, _, _ = rs.build_set_matrix(picked)
    with threadpool_limits(limits=max(1, smk.threads)):
        xy = rs.tsne_embedding(X, perplexity=p.perplexity, seed=p.seed)
    out = [
        {"set": s["label"], "model": s["model"], "trained_on": s["trained_on"], "tested_on": s["tested_on"], "seed": s["seed"], "sample_id": int(sid)}
        for s in picked
        for sid in s["sample_id"]
    ]
    out = [{**r, "x": float(x), "y": float(yy)} for r, (x, yy) in zip(out, xy)]
    write_csv(out, smk.output.table, comments=[f"joint t-SNE (perplexity {p.perplexity}, seed {p.seed}) of standardised features at layer {sets[0]['layer']}, {p.per_set} per set"])
    tsne_figure(out, smk.output.figure, title=f"t-SNE of the representations at {sets[0]['layer']}, coloured by model (thesis Fig. 3.2)")


__all__ += ["representation_train", "representation_extract", "representation_svm", "representation_tsne"]
