# Thin wrapper: the logic is layersim.rules.checkpoint_compare (tested without Snakemake).
from layersim.rules import checkpoint_compare

checkpoint_compare(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
