# Thin wrapper: the logic is layersim.rules.train_epochs (tested without Snakemake).
from layersim.rules import train_epochs

train_epochs(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
