# Thin wrapper: the logic is layersim.rules.minigrid_train (layersim.experiments.entry; tested without Snakemake).
from layersim.rules import minigrid_train

minigrid_train(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
