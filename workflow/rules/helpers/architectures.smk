# Helpers of workflow/rules/architectures.smk (config papers.architectures): its target list and parameters.

ARCHITECTURES = PAPERS["architectures"]


def arch_models():
    """The torch models of the architectures experiment (all of models: when none are listed)."""
    return ARCHITECTURES["models"] or list(config["models"])


def architectures_targets():
    """Targets of papers.architectures, only where the config enables it."""
    if not ARCHITECTURES["enabled"]:
        return []
    targets = [f"{RESULTS}/architectures/{name}" for name in ("pairs.csv", "correlations.csv", "correlations.md")]
    return targets + [f"{RESULTS}/figures/architectures/metric_vs_function.{FMT}"]
