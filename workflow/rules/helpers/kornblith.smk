# Helpers of workflow/rules/kornblith.smk (config papers.kornblith): its target list and parameters.

KORNBLITH = PAPERS["kornblith"]


def identification_instances(model=None):
    """The instances (every seed) of the model of the layer-identification benchmark."""
    model = model or KORNBLITH["model"]
    return [instance(model, s) for s in config["seeds"]]


def kornblith_targets():
    """Targets of papers.kornblith, only where the config enables it."""
    if not KORNBLITH["enabled"]:
        return []
    model = KORNBLITH["model"]
    return [f"{RESULTS}/identification/{model}/accuracy.csv", f"{RESULTS}/figures/identification/{model}.{FMT}"]
