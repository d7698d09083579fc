"""Jobs of the thesis' representation sets (§3.1): SVM and t-SNE."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from layersim.experiments import representation_sets as rs
from layersim.io import write_csv
from layersim.jobs import config_hash, job, job_device, log, train_torch_job
from layersim.plots import confusion_figure, tsne_figure
from layersim.store import ActivationStore, write_activations


@job
def representation_train(smk) -> None:
    """One model trained on the dataset ``trained_on`` (``untrained``: 0 epochs) by ``train_torch``."""
    dataset = rs.load_set_dataset(dict(smk.params.dataset), where=f"papers.representation_sets.datasets.{smk.params.dataset_name}")
    train_torch_job(smk, dataset, epochs=0 if smk.wildcards.trained_on == rs.UNTRAINED else None)


@job
def representation_extract(smk) -> None:
    """One model's features at the layer, and logits, on one test dataset's sampled images → a store."""
    from layersim.extract.torch import overlap_writes, torch_layer_batches
    from layersim.models.torch import layer_names
    from layersim.train.torch import load_torch_checkpoint

    import torch

    p, w = smk.params, smk.wildcards
    torch.set_num_threads(max(1, smk.threads))
    where = f"papers.representation_sets.datasets.{w.tested_on}"
    dataset = rs.load_set_dataset(dict(p.dataset), where=where)
    model, state = load_torch_checkpoint(smk.input.checkpoint)
    channels = dataset.image_shape[0]
    if channels != state["in_channels"]:
        raise rs.RepresentationSetError(f"{where} has {channels}-channel images but the model {w.trained_on}-s{w.seed} takes {state['in_channels']}; set its `channels` to {state['in_channels']}")
    layer = rs.feature_layer(layer_names(model), p.layer)
    rows = rs.sample_rows(len(dataset.eval), p.samples_per_set, p.seed, where="papers.representation_sets.samples_per_set")
    images = dataset.eval.images[rows]
    attrs = {
        "model": f"{w.trained_on}-s{w.seed}", "trained_on": w.trained_on, "tested_on": w.tested_on, "seed": int(w.seed),
        "set": f"{w.trained_on}_{w.tested_on}_s{int(w.seed)}", "feature_layer": layer, "dataset": dataset.name,
        "split": "eval", "framework": "torch", "arch": state["arch"], "epoch": state["epoch"],
        "config_hash": config_hash(p.dataset, p.samples_per_set, p.seed),
    }
    log.info("%s: layer %s on %d images of %s", attrs["set"], layer, len(rows), dataset.name)
    device = job_device(smk)
    write_activations(
        smk.output.store, torch_layer_batches(model, images, p.batch_size, layers=[layer, "logits"], device=device),
        sample_id=dataset.eval.sample_id[rows], labels=dataset.eval.labels[rows], attrs=attrs, overlap=overlap_writes(device, smk.threads),
    )


def _representation_sets(paths) -> list[dict]:
    """The stores of the experiment as sets: label, trained_on, tested_on, seed, features, sample_id."""
    sets = []
    for path in paths:
        store = ActivationStore(path)
        a = store.attrs
        sets.append({"label": a["set"], "trained_on": a["trained_on"], "tested_on": a["tested_on"], "seed": int(a["seed"]), "model": a["model"], "features": store.read(a["feature_layer"]), "sample_id": store.sample_id, "layer": a["feature_layer"]})
    return sets


@job
def representation_svm(smk) -> None:
    """``classify_sets`` over all sets → confusion counts, per-set and overall summaries, figure."""
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


@job
def representation_tsne(smk) -> None:
    """One joint t-SNE of ``tsne_per_set`` representations of every set → coordinates CSV, figure."""
    p = smk.params
    sets = _representation_sets(smk.input.stores)
    picked = []
    for s in sets:
        rows = rs.sample_rows(len(s["features"]), p.per_set, p.seed, where="papers.representation_sets.tsne_per_set")
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
