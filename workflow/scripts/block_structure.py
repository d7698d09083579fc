# Thin wrapper: the logic is layersim.rules.block_structure (tested without Snakemake).
from layersim.rules import block_structure

block_structure(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
