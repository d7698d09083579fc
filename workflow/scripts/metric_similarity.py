# Thin wrapper: the logic is layersim.rules.metric_similarity (tested without Snakemake).
from layersim.rules import metric_similarity

metric_similarity(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
