# Thin wrapper: the logic is layersim.rules.architectures_summary (tested without Snakemake).
from layersim.rules import architectures_summary

architectures_summary(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
