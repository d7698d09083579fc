"""Johnson (2019), Example 3.1: two networks with one ReLU hidden layer, ``y = W2 ReLU(W1 x)``,
compared with subspace match (Wang et al. 2018), linear CKA, CCA and Procrustes in three
:data:`CONSTRUCTIONS` (inputs as rows, W1, W̃1), worked out in docs/metrics.md and docs/papers.md.
"""

from __future__ import annotations

import numpy as np

W2 = np.array([[1.0, -1.0], [1.0, -1.0]])
CONSTRUCTIONS = {
    "printed": (np.array([[1.0, 1.0], [-1.0, -1.0]]), np.eye(2), np.diag([1.0, -1.0])),
    "corrected": (np.array([[1.0, 1.0], [-1.0, -1.0]]), np.eye(2), -np.eye(2)),
    "corrected_6": (np.outer([1.0, -1.0, 2.0, -2.0, 3.0, -3.0], [1.0, 1.0]), np.eye(2), -np.eye(2)),
}


def forward(inputs, w1, w2=W2):
    hidden = np.maximum(inputs @ w1.T, 0.0)
    return hidden, hidden @ w2.T


def johnson_rows(epsilons=(0.0, 0.5)) -> list[dict]:
    """One row per construction: what each metric says about the hidden layers, and whether the
    two networks compute the same function on the inputs."""
    from layersim.metrics import METRICS, subspace_match, value_or_nan

    rows = []
    for name, (inputs, w1, w1_t) in CONSTRUCTIONS.items():
        h, out = forward(inputs, w1)
        h_t, out_t = forward(inputs, w1_t)
        row = {"construction": name, "n_inputs": len(inputs)}
        for eps in epsilons:
            res = subspace_match(h, h_t, epsilon=eps)
            row[f"subspace_match_eps{eps:g}"] = res.similarity
            row[f"match_sets_eps{eps:g}"] = "{" + ",".join(str(i + 1) for i in res.x_neurons) + "} vs {" + ",".join(str(i + 1) for i in res.y_neurons) + "}"
        why = []
        for metric in ("linear_cka", "cca_mean_rho", "procrustes"):
            row[metric], reason = value_or_nan(METRICS[metric], h, h_t)
            why.append(reason.split(";")[0] if reason else "")
        row["max_output_difference"] = float(np.abs(out - out_t).max())
        row["same_function"] = bool(np.allclose(out, out_t))
        row["notes"] = "; ".join(w for w in why if w)
        rows.append(row)
    return rows


def verdict(row: dict) -> str:
    """One sentence: what subspace match says vs what the networks do."""
    match = row["subspace_match_eps0"]
    same = row["same_function"]
    says = "no neuron subspace matches" if match == 0 else f"{match:.2f} of the neurons match"
    does = "the networks compute the same function" if same else "the networks compute different functions"
    return f"subspace match: {says}; CKA {row['linear_cka']:.3g}; {does}"
