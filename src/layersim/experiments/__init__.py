"""The papers' experiments, one module each, pure functions tested without Snakemake (docs/papers.md
maps each to its config section, rule file, job module and outputs)."""
