"""Johnson (2019), Example 3.1: two networks, one ReLU hidden layer, evaluated with subspace
match (Wang et al. 2018), linear CKA, CCA and Procrustes.

Three constructions (rows = inputs, columns = neurons; ``y = W2 ReLU(W1 x)``):

* ``printed``: inputs (1, 1), (−1, −1); W1 = I, W̃1 = diag(1, −1), W2 = W̃2 = [[1, −1], [1, −1]]
  — as printed. Worked out it does *not* show the claim: the outputs differ and the hidden
  layers do match (maximum match ({1, 2}, {1}), similarity 3/4). See docs/metrics.md.
* ``corrected``: the same with W̃1 = −I: identical (zero) outputs, hidden neuron vectors
  (1, 0), (1, 0) vs (0, 1), (0, 1): no ε-match for any ε < 1, although both networks compute
  the same function — what the text describes.
* ``corrected_6``: the corrected weights on six inputs a·(1, 1), a ∈ {±1, ±2, ±3}, so that
  CCA (which needs n ≥ 3 samples) is defined as well.
"""

from __future__ import annotations

import warnings

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


def _safe(f):
    from layersim.metrics import MetricInputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(f()), ""
    except MetricInputError as err:
        return float("nan"), type(err).__name__ + ": " + str(err).split(";")[0]


def johnson_rows(epsilons=(0.0, 0.5)) -> list[dict]:
    """One row per construction: what each metric says about the hidden layers, and whether the
    two networks compute the same function on the inputs."""
    from layersim.metrics import cca, linear_cka, procrustes, subspace_match

    rows = []
    for name, (inputs, w1, w1_t) in CONSTRUCTIONS.items():
        h, out = forward(inputs, w1)
        h_t, out_t = forward(inputs, w1_t)
        row = {"construction": name, "n_inputs": len(inputs)}
        for eps in epsilons:
            res = subspace_match(h, h_t, epsilon=eps)
            row[f"subspace_match_eps{eps:g}"] = res.similarity
            row[f"match_sets_eps{eps:g}"] = "{" + ",".join(str(i + 1) for i in res.x_neurons) + "} vs {" + ",".join(str(i + 1) for i in res.y_neurons) + "}"
        row["linear_cka"], why_cka = _safe(lambda: linear_cka(h, h_t))
        row["cca_mean_rho"], why_cca = _safe(lambda: cca(h, h_t).mean_rho)
        row["procrustes"], why_pr = _safe(lambda: procrustes(h, h_t))
        row["max_output_difference"] = float(np.abs(out - out_t).max())
        row["same_function"] = bool(np.allclose(out, out_t))
        row["notes"] = "; ".join(w for w in (why_cka, why_cca, why_pr) if w) or ""
        rows.append(row)
    return rows


def verdict(row: dict) -> str:
    """One sentence: what subspace match says vs what the networks do."""
    match = row["subspace_match_eps0"]
    same = row["same_function"]
    says = "no neuron subspace matches" if match == 0 else f"{match:.2f} of the neurons match"
    does = "the networks compute the same function" if same else "the networks compute different functions"
    return f"subspace match: {says}; CKA {row['linear_cka']:.3g}; {does}"
