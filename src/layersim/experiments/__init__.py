"""The papers' experiments, one module each: pure functions, tested without Snakemake; the rule
entry points are in :mod:`layersim.jobs` (one module per rule file).

* :mod:`.nguyen` — Nguyen, Raghu & Kornblith (2021): first-PC share per layer, block structure.
* :mod:`.kornblith` — Kornblith et al. (2019), Table 2: layer identification.
* :mod:`.johnson` — Johnson (2019) Example 3.1: subspace match vs CKA/CCA on a hand-built pair.
* :mod:`.existence` — thesis ch. 4 (Table 4.1): frozen base, masked features, label-flipped head.
* :mod:`.checkpoints` — thesis §3.4: checkpoints over training against the final model.
* :mod:`.architectures` — thesis §3.3: metric vs function across architectures.
* :mod:`.representation_sets` — thesis §3.1: representation sets told apart by an SVM, t-SNE.
* :mod:`.ppo`, :mod:`.minigrid` — thesis §3.5: MiniGrid PPO agents and their comparison.
* :mod:`.ding` — Ding & Steinhardt (2021): layer depth / seeds and PC deletion vs probe accuracy.
* :mod:`.common`: Spearman ρ, a fitted line, Markdown tables. Figures are in :mod:`layersim.plots`.

Metrics come from :data:`layersim.metrics.METRICS`, outputs are written by :mod:`layersim.io`,
layers chosen by :func:`layersim.layers.select_layers`.
"""
