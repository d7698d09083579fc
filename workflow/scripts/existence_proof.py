# Thin wrapper: the logic is layersim.rules.existence_proof (tested without Snakemake).
from layersim.rules import existence_proof

existence_proof(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
