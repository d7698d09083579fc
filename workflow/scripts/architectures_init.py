# Thin wrapper: the logic is layersim.rules.architectures_init (tested without Snakemake).
from layersim.rules import architectures_init

architectures_init(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
