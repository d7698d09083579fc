# Thin wrapper: the logic is layersim.rules.functional (tested without Snakemake).
from layersim.rules import functional

functional(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
