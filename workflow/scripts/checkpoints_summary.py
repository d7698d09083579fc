# Thin wrapper: the logic is layersim.rules.checkpoints_summary (tested without Snakemake).
from layersim.rules import checkpoints_summary

checkpoints_summary(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
