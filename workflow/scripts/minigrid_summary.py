# Thin wrapper: the logic is layersim.rules.minigrid_summary (layersim.experiments.entry; tested without Snakemake).
from layersim.rules import minigrid_summary

minigrid_summary(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
