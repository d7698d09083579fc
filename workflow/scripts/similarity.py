# Thin wrapper: the logic is layersim.rules.similarity (tested without Snakemake).
from layersim.rules import similarity

similarity(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
