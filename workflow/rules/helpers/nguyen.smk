# Helpers of workflow/rules/nguyen.smk (config papers.nguyen): its target list and parameters.

NGUYEN = PAPERS["nguyen"]


def pca_path(inst):
    return f"{RESULTS}/pca/{inst}.csv"


def nguyen_series():
    """name → {title, members}: the block-structure series depth_w<W> (the resnet models of width
    W, by depth; if any has width W) and width_d<D> (those of depth D, by width), each member a
    (label, first-seed instance)."""
    if not NGUYEN["block_structure"]["enabled"]:
        return {}
    resnets = resnet_models()
    seed = config["seeds"][0]
    series = {}
    width = NGUYEN["block_structure"]["depth_series_width"]
    by_depth = dict(sorted((c["depth"], m) for m, c in resnets.items() if c.get("width", 1) == width))
    if by_depth:
        name = f"depth_w{width}"
        series[name] = {"title": f"Over depth ({name}): self-similarity and PC1 share", "members": [(f"depth {d}", instance(m, seed)) for d, m in by_depth.items()]}
    for depth in NGUYEN["block_structure"]["width_series_depths"]:
        by_width = dict(sorted((c.get("width", 1), m) for m, c in resnets.items() if c["depth"] == depth))
        name = f"width_d{depth}"
        series[name] = {"title": f"Over width ({name}): self-similarity and PC1 share", "members": [(f"width ×{w}", instance(m, seed)) for w, m in by_width.items()]}
    return series


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


def nguyen_targets():
    """Targets of papers.nguyen, only where the config enables them."""
    targets = []
    if NGUYEN["pca"]["enabled"]:
        targets += [pca_path(instance(m, s)) for m in config["models"] for s in config["seeds"]]
    if NGUYEN["block_structure"]["enabled"] and resnet_models():
        targets += [f"{RESULTS}/figures/series/{name}.{FMT}" for name in nguyen_series()]
        targets += [f"{RESULTS}/block_structure/summary.csv", f"{RESULTS}/figures/block_structure.{FMT}"]
        if cross_seed_rows():
            targets.append(f"{RESULTS}/figures/cross_seed.{FMT}")
    return targets
