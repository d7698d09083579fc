# Helpers of workflow/rules/representation_sets.smk (config papers.representation_sets): its target list and parameters.

RS = PAPERS["representation_sets"]
RS_UNTRAINED = "untrained"


def rs_model():
    """The model of the representation-set experiment (a torch model, checked by layersim.config)."""
    return RS["model"]


def rs_dataset(name):
    """The datasets: entry `name` (source, transform, channels), key-sorted."""
    return sorted_params(RS["datasets"][name])


def rs_train_dataset(trained_on):
    """The dataset a model trains on; the untrained copies are built for the first train_on dataset."""
    return RS["train_on"][0] if trained_on == RS_UNTRAINED else trained_on


def rs_trained_on():
    """Every trained_on value: the train_on datasets, then `untrained` if asked for."""
    return list(RS["train_on"]) + ([RS_UNTRAINED] if RS["untrained"] else [])


def rs_models_regex():
    names = rs_trained_on() if RS["train_on"] else []
    return "|".join(names) if names else "(?!)"


def rs_stores():
    """The store of every representation set, in the order trained_on, seed, tested_on."""
    return [f"{RESULTS}/representation_sets/activations/{t}-s{s}__{d}.zarr" for t in rs_trained_on() for s in config["seeds"] for d in RS["test_on"]]


def representation_sets_targets():
    """Targets of papers.representation_sets, only where the config enables it."""
    if not RS["enabled"]:
        return []
    targets = [f"{RESULTS}/representation_sets/{name}.csv" for name in ("confusion", "per_set", "summary", "tsne")]
    return targets + [f"{RESULTS}/figures/representation_sets/{name}.{FMT}" for name in ("confusion", "tsne")]
