# Thin wrapper: the logic is layersim.rules.representation_svm (tested without Snakemake).
from layersim.rules import representation_svm

representation_svm(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
