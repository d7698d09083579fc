# Thin wrapper: the logic is layersim.rules.ding_benchmark (tested without Snakemake).
from layersim.rules import ding_benchmark

ding_benchmark(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
