# Config validation, wildcard constraints, target lists and small param helpers.
import json

from snakemake.utils import validate

from layersim.metrics import METRICS

METRIC_NAMES = sorted(METRICS)


validate(config, "../schemas/config.schema.yaml", set_default=True)

RESULTS = f"results/{config['experiment']}"
FMT = config["figures"]["format"]
NAME = r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*"
INSTANCE = NAME + r"-s\d+-e\d+"


wildcard_constraints:
    model=NAME,
    seed=r"\d+",
    epoch=r"\d+",
    a=INSTANCE,
    b=INSTANCE,
    metric="|".join(METRIC_NAMES),


def rule_resources(rule):
    """Job resources (memory, runtime and, when set, GPUs, partition, constraint) from config."""
    res = config["resources"][rule]
    out = {"mem_mb": res["mem_mb"], "runtime": res["runtime"]}
    if res["gpu"]:
        out["gpu"] = res["gpu"]
    for key in ("slurm_partition", "constraint"):
        if res[key]:
            out[key] = res[key]
    return out


def framework(model):
    return config["models"][model].get("framework", "torch")


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
    """The global training settings merged with the model's own overrides."""
    return sorted_params({**config["train"], **config["models"][model].get("train", {})})


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
        for name in (a, b):
            if name not in config["models"]:
                raise ValueError(
                    f"config similarity.compare.pairs names model {name!r}, which is not "
                    f"under models: (known: {', '.join(config['models'])})"
                )
        pairs.append((instance(a, seeds[0]), instance(b, seeds[0])))
    return list(dict.fromkeys(pairs))


def explicit_pairs():
    """The instance pairs of similarity.compare.pairs (first seed)."""
    seeds = config["seeds"]
    return [(instance(a, seeds[0]), instance(b, seeds[0])) for a, b in config["similarity"]["compare"]["pairs"]]


def grid_cells():
    """Depth × width layout of the self-similarity grid (first seed of each ResNet)."""
    resnets = {m: c for m, c in config["models"].items() if c.get("family", "resnet") == "resnet"}
    if not resnets:
        return [], [], {}
    depths = sorted({c["depth"] for c in resnets.values()})
    widths = sorted({c.get("width", 1) for c in resnets.values()})
    cells = {}
    for m, c in resnets.items():
        cells.setdefault((depths.index(c["depth"]), widths.index(c.get("width", 1))), m)
    return depths, widths, {f"{i},{j}": instance(m, config["seeds"][0]) for (i, j), m in cells.items()}


def similarity_path(a, b):
    return f"{RESULTS}/similarity/cka/{a}__{b}.zarr"


def all_targets():
    targets = [f"{RESULTS}/figures/heatmaps/{a}__{b}.{FMT}" for a, b in compared_pairs()]
    if config["metrics"]["names"]:
        targets += [f"{RESULTS}/figures/metrics/{a}__{b}.{FMT}" for a, b in explicit_pairs()]
    if config["functional"]:
        targets += [f"{RESULTS}/functional/{a}__{b}.json" for a, b in compared_pairs() if a != b]
    if config["similarity"]["compare"]["self"] and grid_cells()[2]:
        targets.append(f"{RESULTS}/figures/self_similarity_grid.{FMT}")
    targets += paper_targets()
    targets += functional_paper_targets()  # workflow/rules/functional_papers.smk
    return targets


# --- Paper experiments (docs/papers.md): block structure and layer identification ---


def pca_path(inst):
    return f"{RESULTS}/pca/{inst}.csv"


def resnet_models():
    """name → config of every model of the resnet family."""
    return {m: c for m, c in config["models"].items() if c.get("family", "resnet") == "resnet"}


def series_names():
    """The block-structure series: depth_w<W> (if any resnet has width W) and width_d<D>."""
    if not config["block_structure"]["enabled"]:
        return []
    resnets = resnet_models()
    names = []
    width = config["block_structure"]["depth_series_width"]
    if any(c.get("width", 1) == width for c in resnets.values()):
        names.append(f"depth_w{width}")
    for depth in config["block_structure"]["width_series_depths"]:
        if not any(c["depth"] == depth for c in resnets.values()):
            raise ValueError(f"config block_structure.width_series_depths lists depth {depth}, but no resnet model has it")
        names.append(f"width_d{depth}")
    return names


def series_members(series):
    """(label, first-seed instance) of each model of one series, in order of depth or width."""
    resnets = resnet_models()
    kind, value = series.split("_")
    if kind == "depth":
        chosen = sorted((c["depth"], m) for m, c in resnets.items() if c.get("width", 1) == int(value[1:]))
        return [(f"depth {d}", instance(m, config["seeds"][0])) for d, m in dict(chosen).items()]
    chosen = sorted((c.get("width", 1), m) for m, c in resnets.items() if c["depth"] == int(value[1:]))
    return [(f"width ×{w}", instance(m, config["seeds"][0])) for w, m in dict(chosen).items()]


def block_instances():
    """Every (resnet model, seed) instance the block-structure table covers, with its shape."""
    return [
        {"model": m, "seed": s, "depth": c["depth"], "width": c.get("width", 1), "instance": instance(m, s)}
        for m, c in resnet_models().items()
        for s in config["seeds"]
    ]


def cross_seed_rows():
    """(seed a instance, seed b instance) of every resnet model, first two seeds."""
    seeds = config["seeds"]
    if len(seeds) < 2:
        return []
    return [(instance(m, seeds[0]), instance(m, seeds[1])) for m in resnet_models()]


def identification_instances(model=None):
    """The instances (every seed) of the model of the layer-identification benchmark."""
    model = model or config["identification"]["model"]
    if model not in config["models"]:
        raise ValueError(f"config identification.model is {model!r}, which is not under models: (known: {', '.join(config['models'])})")
    if len(config["seeds"]) < 2:
        raise ValueError("layer identification compares the seeds of one model: config seeds needs at least 2")
    return [instance(model, s) for s in config["seeds"]]


def paper_targets():
    """Targets of the paper experiments, only where the config enables them."""
    targets = []
    if config["pca"]["enabled"]:
        targets += [pca_path(instance(m, s)) for m in config["models"] for s in config["seeds"]]
    if config["block_structure"]["enabled"] and resnet_models():
        targets += [f"{RESULTS}/figures/series/{name}.{FMT}" for name in series_names()]
        targets += [f"{RESULTS}/block_structure/summary.csv", f"{RESULTS}/figures/block_structure.{FMT}"]
        if cross_seed_rows():
            targets.append(f"{RESULTS}/figures/cross_seed.{FMT}")
    if config["identification"]["enabled"]:
        model = config["identification"]["model"]
        identification_instances()
        targets += [f"{RESULTS}/identification/{model}/accuracy.csv", f"{RESULTS}/figures/identification/{model}.{FMT}"]
    return targets


# Helpers of workflow/rules/functional_papers.smk (the thesis / Ding / Johnson experiments).
FP = config["functional_papers"]


def fp_model(section):
    """The model an experiment section names, checked against models:."""
    model = FP[section]["model"]
    if model not in config["models"]:
        raise ValueError(f"config functional_papers.{section}.model is {model!r}, which is not under models: (known: {', '.join(config['models'])})")
    return model


def functional_paper_targets():
    """Targets of the functional-similarity experiments the config enables."""
    targets = []
    if FP["johnson"]["enabled"]:
        targets += [f"{RESULTS}/johnson/table.csv", f"{RESULTS}/johnson/table.md"]
    if FP["existence"]["enabled"]:
        targets += [f"{RESULTS}/existence/table.csv", f"{RESULTS}/existence/table.md", f"{RESULTS}/figures/existence.{FMT}"]
    if FP["checkpoints"]["enabled"]:
        ckpt_models()
        targets += [f"{RESULTS}/checkpoints/summary.csv", f"{RESULTS}/figures/checkpoints/over_training.{FMT}", f"{RESULTS}/figures/checkpoints/cka_vs_jsd.{FMT}"]
    if FP["ding"]["enabled"]:
        fp_model("ding")
        targets += [f"{RESULTS}/ding/summary.csv", f"{RESULTS}/figures/ding/layer_depth.{FMT}", f"{RESULTS}/figures/ding/pc_deletion.{FMT}"]
    if FP["architectures"]["enabled"]:  # workflow/rules/architectures.smk
        arch_models()
        targets += [f"{RESULTS}/architectures/{name}" for name in ("pairs.csv", "correlations.csv", "correlations.md")]
        targets.append(f"{RESULTS}/figures/architectures/metric_vs_function.{FMT}")
    if FP["representation_sets"]["enabled"]:
        rs_stores()
        targets += [f"{RESULTS}/representation_sets/{name}.csv" for name in ("confusion", "per_set", "summary", "tsne")]
        targets += [f"{RESULTS}/figures/representation_sets/{name}.{FMT}" for name in ("confusion", "tsne")]
    if FP["minigrid"]["enabled"]:  # workflow/rules/minigrid.smk
        targets += [f"{RESULTS}/minigrid/summary.csv", f"{RESULTS}/minigrid/summary.md", f"{RESULTS}/figures/minigrid/cka_vs_jsd.{FMT}", f"{RESULTS}/figures/minigrid/cka_vs_rank.{FMT}"]
    return targets


def ckpt_models():
    models = FP["checkpoints"]["models"]
    for m in models:
        if m not in config["models"]:
            raise ValueError(f"config functional_papers.checkpoints.models names {m!r}, which is not under models: (known: {', '.join(config['models'])})")
    if len({train_params(m)["epochs"] for m in models}) > 1:
        raise ValueError("config functional_papers.checkpoints.models must all train for the same number of epochs")
    return models


def ckpt_epochs():
    models = ckpt_models() if FP["checkpoints"]["enabled"] else []
    if not models:
        return [0]
    last = train_params(models[0])["epochs"]
    return sorted(set(range(0, last + 1, FP["checkpoints"]["every"])) | {last})


# Helpers of workflow/rules/architectures.smk (thesis §3.3, Table 3.1).


def arch_models():
    """The torch models of the architectures experiment (all of models: when none are listed)."""
    models = FP["architectures"]["models"] or list(config["models"])
    for m in models:
        if m not in config["models"] or framework(m) != "torch":
            raise ValueError(f"config functional_papers.architectures.models names {m!r}, which is not a torch model under models: (known: {', '.join(config['models'])})")
    if len(models) * len(config["seeds"]) < 2:
        raise ValueError("config functional_papers.architectures compares pairs of instances: it needs at least 2 (models × seeds)")
    return models


# Helpers of workflow/rules/representation_sets.smk (thesis §3.1: representation sets, SVM, t-SNE).
RS = FP["representation_sets"]
RS_UNTRAINED = "untrained"


def rs_model():
    """The model of the representation-set experiment: a torch model under models:."""
    model = RS["model"]
    if model not in config["models"] or framework(model) != "torch":
        raise ValueError(f"config functional_papers.representation_sets.model is {model!r}; it must name a torch model under models: (known: {', '.join(config['models'])})")
    return model


def rs_dataset(name):
    """The datasets: entry `name` (source, transform, channels), key-sorted."""
    if name not in RS["datasets"]:
        raise ValueError(f"config functional_papers.representation_sets names dataset {name!r}, which is not under its datasets: (known: {', '.join(RS['datasets']) or 'none'})")
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
    rs_model()
    if not RS["train_on"] or not RS["test_on"]:
        raise ValueError("config functional_papers.representation_sets needs at least one dataset in train_on and one in test_on")
    for name in RS["train_on"] + RS["test_on"]:
        rs_dataset(name)
    if len(rs_trained_on()) * len(config["seeds"]) * len(RS["test_on"]) < 2:
        raise ValueError("config functional_papers.representation_sets gives fewer than 2 representation sets; add seeds, datasets or untrained: true")
    return [f"{RESULTS}/representation_sets/activations/{t}-s{s}__{d}.zarr" for t in rs_trained_on() for s in config["seeds"] for d in RS["test_on"]]
