# Helpers of workflow/rules/minigrid.smk (config papers.minigrid): its target list and parameters.

MG = PAPERS["minigrid"]


def minigrid_targets():
    """Targets of papers.minigrid, only where the config enables it."""
    if not MG["enabled"]:
        return []
    return [f"{RESULTS}/minigrid/summary.csv", f"{RESULTS}/minigrid/summary.md", f"{RESULTS}/figures/minigrid/cka_vs_jsd.{FMT}", f"{RESULTS}/figures/minigrid/cka_vs_rank.{FMT}"]
