# Helpers of workflow/rules/ding.smk (config papers.ding): its target list and parameters.

def ding_targets():
    """Targets of papers.ding, only where the config enables it."""
    if not PAPERS["ding"]["enabled"]:
        return []
    return [f"{RESULTS}/ding/summary.csv", f"{RESULTS}/figures/ding/layer_depth.{FMT}", f"{RESULTS}/figures/ding/pc_deletion.{FMT}"]
