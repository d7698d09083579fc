# Thin wrapper: the logic is layersim.rules.train (tested without Snakemake).
from layersim.rules import train

train(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
