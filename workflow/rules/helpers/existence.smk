# Helpers of workflow/rules/existence.smk (config papers.existence): its target list and parameters.

def existence_targets():
    """Targets of papers.existence, only where the config enables it."""
    if not PAPERS["existence"]["enabled"]:
        return []
    return [f"{RESULTS}/existence/table.csv", f"{RESULTS}/existence/table.md", f"{RESULTS}/figures/existence.{FMT}"]
