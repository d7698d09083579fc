# Thin wrapper: the logic is layersim.rules.johnson_table (tested without Snakemake).
from layersim.rules import johnson_table

johnson_table(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
