"""The papers' experiments, one module each (its docstring names the paper; docs/papers.md maps
each to its config section, rule file and outputs): pure functions, tested without Snakemake; the
rule entry points are in :mod:`layersim.jobs` (one module per rule file). :mod:`.common` holds
Spearman ρ, a fitted line and Markdown tables; figures are in :mod:`layersim.plots`.

Metrics come from :data:`layersim.metrics.METRICS`, outputs are written by :mod:`layersim.io`,
layers chosen by :func:`layersim.layers.select_layers`.
"""
