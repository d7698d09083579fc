# Thin wrapper: the logic is layersim.rules.similarity (tested without Snakemake).
from layersim.blas import prefer_gram_kernels

prefer_gram_kernels(snakemake.params.dtype)  # noqa: F821 (before numpy loads OpenBLAS; see layersim.blas)

from layersim.rules import similarity  # noqa: E402

similarity(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
