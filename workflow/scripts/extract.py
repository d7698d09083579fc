# Thin wrapper: the logic is layersim.rules.extract (tested without Snakemake).
from layersim.rules import extract

extract(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
