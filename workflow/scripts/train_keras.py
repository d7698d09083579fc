# Thin wrapper: the logic is layersim.rules.train_keras (tested without Snakemake).
from layersim.rules import train_keras

train_keras(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
