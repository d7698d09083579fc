# Stage 4b: Nguyen et al. 2021 figures (layersim.plots): depth and width series of
# self-similarity heatmaps with each layer's first-PC share, the cross-seed grid, and the size of
# the block structure against depth and width (layersim.experiments.nguyen.largest_block).


rule series_figure:
    input:
        results=lambda w: [similarity_path(inst, inst) for _, inst in series_members(w.series)],
        pca=lambda w: [pca_path(inst) for _, inst in series_members(w.series)],
    output:
        figure=report(
            f"{RESULTS}/figures/series/{{series}}.{FMT}",
            caption="../report/series.rst",
            category="Block structure",
        ),
    params:
        instances=lambda w: [inst for _, inst in series_members(w.series)],
        labels=lambda w: [label for label, _ in series_members(w.series)],
        title=lambda w: ("Over depth" if w.series.startswith("depth") else "Over width") + f" ({w.series}): self-similarity and PC1 share",
        max_labels=config["figures"]["max_labels"],
    log:
        f"{RESULTS}/logs/figures/series/{{series}}.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    wildcard_constraints:
        series=r"(depth_w|width_d)\d+",
    script:
        "../scripts/job.py"


rule block_structure:
    input:
        results=lambda w: [similarity_path(e["instance"], e["instance"]) for e in block_instances()],
        pca=lambda w: [pca_path(e["instance"]) for e in block_instances()],
    output:
        table=f"{RESULTS}/block_structure/summary.csv",
        figure=report(
            f"{RESULTS}/figures/block_structure.{FMT}",
            caption="../report/block_structure.rst",
            category="Block structure",
        ),
    params:
        instances=block_instances(),
        layers=config["block_structure"]["layers"],
        threshold=config["block_structure"]["threshold"],
        depth_width=config["block_structure"]["depth_series_width"],
        width_depths=config["block_structure"]["width_series_depths"],
    log:
        f"{RESULTS}/logs/figures/block_structure.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule cross_seed_figure:
    input:
        results=lambda w: list(dict.fromkeys(similarity_path(x, y) for a, b in cross_seed_rows() for x, y in ((a, a), (b, b), (a, b)))),
    output:
        figure=report(
            f"{RESULTS}/figures/cross_seed.{FMT}",
            caption="../report/cross_seed.rst",
            category="Block structure",
        ),
    params:
        rows=cross_seed_rows(),
    log:
        f"{RESULTS}/logs/figures/cross_seed.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
