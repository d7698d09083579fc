# Thin wrapper: the logic is layersim.rules.architectures_pairs (tested without Snakemake).
from layersim.rules import architectures_pairs

architectures_pairs(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
