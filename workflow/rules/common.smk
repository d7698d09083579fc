# Config validation, wildcard constraints, the core pipeline's target list and small param helpers.
# Each paper experiment's helpers live in its own rule file (workflow/rules/<paper>.smk).
import sys
from pathlib import Path

from layersim.config import ConfigError, check_model_name, load_workflow_config, train_settings
from layersim.metrics import METRICS

METRIC_NAMES = sorted(METRICS)

# One step: re-read the config files safely (no YAML aliases, no duplicate keys), fill the
# schema's defaults, check the schema and every cross-field rule; one short paragraph per error.
try:
    load_workflow_config(config, workflow.configfiles, schema_path=Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except ConfigError as err:
    sys.exit(f"layersim: {err}")

RESULTS = f"results/{config['experiment']}"
PAPERS = config["papers"]
FMT = config["figures"]["format"]
NAME = r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*"
INSTANCE = NAME + r"-s\d+-e\d+"


wildcard_constraints:
    model=NAME,
    seed=r"\d+",
    epoch=r"\d+",
    a=INSTANCE,
    b=INSTANCE,
    instance=INSTANCE,
    metric="|".join(METRIC_NAMES),


def rule_resources(rule, gpu=True):
    """Job resources (memory, runtime and, when set and ``gpu``, GPUs; partition, constraint) from config."""
    res = config["resources"][rule]
    out = {"mem_mb": res["mem_mb"], "runtime": res["runtime"]}
    if res["gpu"] and gpu:
        out["gpu"] = res["gpu"]
    for key in ("slurm_partition", "constraint"):
        if res[key]:
            out[key] = res[key]
    return out


def framework(model):
    """torch or keras; a model name that is not under models: (e.g. in a requested path) is one
    clear error listing the known models."""
    return config["models"][check_model_name(config, model)].get("framework", "torch")


def models_of(fw):
    """Regex matching exactly the names of the models of one framework (never matches if none)."""
    names = [m for m in config["models"] if framework(m) == fw]
    return "|".join(names) if names else "(?!)"


def checkpoint_path(model, seed, epoch):
    ext = "keras" if framework(model) == "keras" else "pt"
    return f"{RESULTS}/models/{model}/s{seed}/e{epoch}.{ext}"


def sorted_params(mapping):
    """A dict param with its keys sorted: Snakemake compares params as stored, so the order in
    which a config lists its keys must not make a job look stale."""
    return {k: sorted_params(v) if isinstance(v, dict) else v for k, v in sorted(mapping.items())}


DATASET = sorted_params(config["dataset"])


def train_params(model):
    """The model's training settings (:func:`layersim.config.train_settings`), keys sorted."""
    return sorted_params(train_settings(config, check_model_name(config, model)))


def arch_params(model):
    """The architecture of a model, without its training overrides."""
    return sorted_params({k: v for k, v in config["models"][model].items() if k != "train"})


def instance(model, seed):
    """The name of one trained instance: <model>-s<seed>-e<epochs>."""
    return f"{model}-s{seed}-e{train_params(model)['epochs']}"


def compared_pairs():
    """Every (instance a, instance b) pair the config asks for, without repeats."""
    compare = config["similarity"]["compare"]
    seeds = config["seeds"]
    pairs = []
    if compare["self"]:
        pairs += [(instance(m, s), instance(m, s)) for m in config["models"] for s in seeds]
    if compare["across_seeds"]:
        pairs += [
            (instance(m, s), instance(m, t))
            for m in config["models"]
            for i, s in enumerate(seeds)
            for t in seeds[i + 1 :]
        ]
    for a, b in compare["pairs"]:
        pairs.append((instance(a, seeds[0]), instance(b, seeds[0])))
    return list(dict.fromkeys(pairs))


def explicit_pairs():
    """The instance pairs of similarity.compare.pairs (first seed)."""
    seeds = config["seeds"]
    return [(instance(a, seeds[0]), instance(b, seeds[0])) for a, b in config["similarity"]["compare"]["pairs"]]


def resnet_models():
    """name → config of every model of the resnet family."""
    return {m: c for m, c in config["models"].items() if c.get("family", "resnet") == "resnet"}


def grid_cells():
    """Depth × width layout of the self-similarity grid (first seed of each ResNet): the depths,
    the widths and one [row, column, instance] per cell."""
    resnets = resnet_models()
    if not resnets:
        return [], [], []
    depths = sorted({c["depth"] for c in resnets.values()})
    widths = sorted({c.get("width", 1) for c in resnets.values()})
    cells = {}
    for m, c in sorted(resnets.items()):  # by name: the order of config keys is not a change
        cells.setdefault((depths.index(c["depth"]), widths.index(c.get("width", 1))), m)
    return depths, widths, [[i, j, instance(m, config["seeds"][0])] for (i, j), m in sorted(cells.items())]


def similarity_path(a, b):
    return f"{RESULTS}/similarity/cka/{a}__{b}.zarr"


def comparison_kind(wildcards):
    """The report subcategory of an instance pair: one instance with itself, two seeds of one
    model, or two models."""
    if wildcards.a == wildcards.b:
        return "Self-similarity"
    if wildcards.a.split("-")[0] == wildcards.b.split("-")[0]:  # the model name has no "-"
        return "Across seeds"
    return "Between models"


def all_targets():
    targets = [f"{RESULTS}/figures/heatmaps/{a}__{b}.{FMT}" for a, b in compared_pairs()]
    if config["metrics"]["names"]:
        targets += [f"{RESULTS}/figures/metrics/{a}__{b}_metrics.{FMT}" for a, b in explicit_pairs()]
    if config["functional"]:
        targets += [f"{RESULTS}/functional/{a}__{b}.json" for a, b in compared_pairs() if a != b]
    if config["similarity"]["compare"]["self"] and grid_cells()[2]:
        targets.append(f"{RESULTS}/figures/self_similarity_grid.{FMT}")
    # each paper experiment's targets, from its own rule file (workflow/rules/<paper>.smk)
    for paper_targets in (nguyen_targets, kornblith_targets, johnson_targets, existence_targets, checkpoints_targets, ding_targets, architectures_targets, representation_sets_targets, minigrid_targets):
        targets += paper_targets()
    return targets


def paper_model(paper):
    """The model papers.<paper>.model names (checked against models: by layersim.config)."""
    return PAPERS[paper]["model"]


def activation_store(path):
    """An activation store output: kept, or temp() when config extract.keep_stores is false."""
    return directory(path) if config["extract"]["keep_stores"] else temp(directory(path))


def gram_store(path):
    """A Gram store output: kept, or temp() when config similarity.keep_grams is false."""
    return directory(path) if config["similarity"]["keep_grams"] else temp(directory(path))
