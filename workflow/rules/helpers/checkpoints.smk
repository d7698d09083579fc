# Helpers of workflow/rules/checkpoints.smk (config papers.checkpoints): its target list and parameters.

CHECKPOINTS = PAPERS["checkpoints"]


def ckpt_models():
    """The models of papers.checkpoints (checked by layersim.config: known, same epochs)."""
    return CHECKPOINTS["models"]


def ckpt_epochs():
    models = ckpt_models() if CHECKPOINTS["enabled"] else []
    if not models:
        return [0]
    last = train_params(models[0])["epochs"]
    return sorted(set(range(0, last + 1, CHECKPOINTS["every"])) | {last})


def checkpoints_targets():
    """Targets of papers.checkpoints, only where the config enables it."""
    if not CHECKPOINTS["enabled"]:
        return []
    return [f"{RESULTS}/checkpoints/summary.csv", f"{RESULTS}/figures/checkpoints/over_training.{FMT}", f"{RESULTS}/figures/checkpoints/checkpoint_cka_vs_jsd.{FMT}"]
