# Thin wrapper: the logic is layersim.rules.identification (tested without Snakemake).
from layersim.rules import identification

identification(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
