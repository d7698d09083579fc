# Thin wrapper: the logic is layersim.rules.metrics_figure (tested without Snakemake).
from layersim.rules import metrics_figure

metrics_figure(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
