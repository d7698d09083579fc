# Thin wrapper: the logic is layersim.rules.heatmap (tested without Snakemake).
from layersim.rules import heatmap

heatmap(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
