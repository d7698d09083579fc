# Thin wrapper: the logic is layersim.rules.representation_train (tested without Snakemake).
from layersim.rules import representation_train

representation_train(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
