"""Checkpoints over training against the final model (thesis §3.4, Fig. 3.5; docs/papers.md)."""

from __future__ import annotations


def compare_with_final(paths: dict[int, str], *, layers: str = "^pool$", max_samples: int | None = None) -> list[dict]:
    """``paths``: epoch → activation store (epoch 0 = initialisation). One row per (epoch, layer):
    linear CKA of the layer with the final checkpoint's, JSD, confidence rank correlation and
    prediction disagreement of the outputs against the final model's."""
    from layersim.layers import select_layers
    from layersim.metrics import METRICS, confidence_rank_correlation, jsd, prediction_disagreement, value_or_nan
    from layersim.metrics.functional import softmax
    from layersim.store import ActivationStore, check_comparable

    epochs = sorted(paths)
    final = ActivationStore(paths[epochs[-1]])
    chosen = select_layers(final.layers, layers, what=f"layer pattern of {final.name}", include_logits=True)
    rows_ = slice(0, max_samples)
    ref = {l: final.read(l, rows_) for l in chosen}
    labels = final.labels[rows_]
    p_final = softmax(final.read("logits", rows_))
    rows = []
    for epoch in epochs:
        store = ActivationStore(paths[epoch])
        check_comparable(store, final)
        p = softmax(store.read("logits", rows_))
        functional = {
            "jsd_bits": jsd(p, p_final),
            "rank_correlation": confidence_rank_correlation(p, p_final, labels),
            "disagreement": prediction_disagreement(p, p_final),
            "accuracy": float((p.argmax(1) == labels).mean()),
        }
        for layer in chosen:
            cka, _ = value_or_nan(METRICS["linear_cka"], store.read(layer, rows_), ref[layer])
            rows.append({"epoch": epoch, "layer": layer, "cka": cka, **functional})
    return rows
