# Thin wrapper: the logic is layersim.rules.identification_figure (tested without Snakemake).
from layersim.rules import identification_figure

identification_figure(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
