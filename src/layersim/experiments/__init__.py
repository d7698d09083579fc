"""Experiments of the functional-similarity papers (issue 9, docs/papers_functional.md).

One module per experiment; each exposes pure functions (tested without Snakemake) and the rule
entry points live in :mod:`layersim.jobs.papers` (re-exported by :mod:`layersim.jobs.core`).

* :mod:`.johnson` — Johnson (2019) Example 3.1: subspace match vs CKA/CCA on a hand-built pair.
* :mod:`.existence` — thesis ch. 4 (Table 4.1): frozen base, masked features, label-flipped head.
* :mod:`.checkpoints` — thesis §3.4: checkpoints over training against the final model.
* :mod:`.ding` — Ding & Steinhardt (2021): layer depth / seeds and PC deletion vs probe accuracy.
* :mod:`.common` — small shared helpers (softmax, CSV writing, Spearman with a fit line).
"""
