# Thin wrapper: the logic is layersim.rules.minigrid_compare (layersim.experiments.entry; tested without Snakemake).
from layersim.rules import minigrid_compare

minigrid_compare(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
