# Thin wrapper: the logic is layersim.rules.representation_extract (tested without Snakemake).
from layersim.rules import representation_extract

representation_extract(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
