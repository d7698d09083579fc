"""The thesis' existence proof (ch. 4, Table 4.1): high representational similarity, divergent
function. Two linear heads on masked copies of a frozen base's features; the method and the
reading of ``d_ratio`` as the share masked (as the thesis' table has it): docs/papers.md.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from layersim.metrics import METRICS, confidence_rank_correlation, jsd, value_or_nan
from layersim.metrics.functional import softmax
from layersim.parallel import torch_threads


@torch_threads(1)
def _linear_head(x, y, x_test, num_classes, steps, seed, lr=0.05, weight_decay=1e-4):
    """A linear head trained on ``x``, ``y`` (Adam, cross-entropy): its predictions on ``x_test``."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    head = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(xt), yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return softmax(head(torch.from_numpy(x_test.astype(np.float32))).double().numpy())


def existence_rows(features, labels, num_classes: int, *, d_ratios, flip_fraction=1.0, head_fraction=0.5, steps=300, seed=0) -> list[dict]:
    """One row per ``d_ratio``: CKA/CCA of the features and of the masked features, JSD, rank
    correlation and accuracies of the two heads."""
    cka, cca = METRICS["linear_cka"], METRICS["cca_mean_rho"]

    X = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    mu, sd = X.mean(0), X.std(0)
    Xs = (X - mu) / np.where(sd > 0, sd, 1.0)  # standardised: the heads' input scale
    idx_train, idx_test = train_test_split(np.arange(len(X)), train_size=head_fraction, stratify=labels, random_state=seed)
    Xs_train, Xs_test = Xs[idx_train], Xs[idx_test]
    y_train = labels[idx_train]
    y_test = labels[idx_test]
    flip = np.random.default_rng(seed).random(len(y_train)) < flip_fraction
    flipped = np.where(flip, num_classes - 1 - y_train, y_train)
    p = X.shape[1]
    rows = []
    X_test = X[idx_test]
    cka_features = value_or_nan(cka, X_test, X_test)[0]
    cca_features = value_or_nan(cca, X_test, X_test)[0]
    for d in d_ratios:
        k = max(1, int(round((1.0 - d) * p)))
        keep1, keep2 = np.arange(k), np.arange(p - k, p)
        P1 = _linear_head(Xs_train[:, keep1], y_train, Xs_test[:, keep1], num_classes, steps, seed)
        P2 = _linear_head(Xs_train[:, keep2], flipped, Xs_test[:, keep2], num_classes, steps, seed + 1)
        m1, m2 = np.zeros_like(X_test), np.zeros_like(X_test)
        m1[:, keep1], m2[:, keep2] = X_test[:, keep1], X_test[:, keep2]
        rows.append({
            "d_ratio": float(d),
            "active_dims": k,
            "overlap_dims": max(0, 2 * k - p),
            "cka_features": cka_features,
            "cca_features": cca_features,
            "cka_masked": value_or_nan(cka, m1, m2)[0],
            "cca_masked": value_or_nan(cca, X_test[:, keep1], X_test[:, keep2])[0],
            "jsd_bits": jsd(P1, P2),
            "rank_correlation": confidence_rank_correlation(P1, P2, y_test),
            "accuracy_net1": float((P1.argmax(1) == y_test).mean()),
            "accuracy_net2": float((P2.argmax(1) == y_test).mean()),
            "accuracy_net2_on_flipped": float((P2.argmax(1) == num_classes - 1 - y_test).mean()),
            "n_train": len(idx_train),
            "n_test": len(idx_test),
        })
    return rows
