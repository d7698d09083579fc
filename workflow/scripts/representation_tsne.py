# Thin wrapper: the logic is layersim.rules.representation_tsne (tested without Snakemake).
from layersim.rules import representation_tsne

representation_tsne(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
