# Thin wrapper: the logic is layersim.rules.cross_seed_figure (tested without Snakemake).
from layersim.rules import cross_seed_figure

cross_seed_figure(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
