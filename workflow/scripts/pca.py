# Thin wrapper: the logic is layersim.rules.pca (tested without Snakemake).
from layersim.rules import pca

pca(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
