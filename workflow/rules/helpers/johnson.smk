# Helpers of workflow/rules/johnson.smk (config papers.johnson): its target list and parameters.

def johnson_targets():
    """Targets of papers.johnson, only where the config enables it."""
    if not PAPERS["johnson"]["enabled"]:
        return []
    return [f"{RESULTS}/johnson/table.csv", f"{RESULTS}/johnson/table.md"]
