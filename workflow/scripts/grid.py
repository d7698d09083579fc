# Thin wrapper: the logic is layersim.rules.grid (tested without Snakemake).
from layersim.rules import grid

grid(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
