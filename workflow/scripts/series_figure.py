# Thin wrapper: the logic is layersim.rules.series_figure (tested without Snakemake).
from layersim.rules import series_figure

series_figure(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
