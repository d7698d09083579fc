# Nguyen, Raghu & Kornblith (2021), docs/papers.md; jobs in layersim.jobs.nguyen. Config
# papers.nguyen: pca (the first principal component's share of variance per layer of one store,
# read batch-wise: layersim.experiments.nguyen.pc_shares) and block_structure (depth and width
# series of self-similarity heatmaps with each layer's first-PC share, the cross-seed grid, and the
# size of the block structure against depth and width: layersim.experiments.nguyen.largest_block).


include: "helpers/nguyen.smk"


rule pca:
    input:
        store=f"{RESULTS}/activations/{{model}}-s{{seed}}-e{{epoch}}.zarr",
    output:
        table=f"{RESULTS}/pca/{{model}}-s{{seed}}-e{{epoch}}.csv",
    params:
        block_rows=NGUYEN["pca"]["block_rows"],
        max_gram_features=NGUYEN["pca"]["max_gram_features"],
        oversamples=NGUYEN["pca"]["oversamples"],
        n_iter=NGUYEN["pca"]["n_iter"],
    log:
        f"{RESULTS}/logs/pca/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pca/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["pca"]["threads"]
    resources:
        **rule_resources("pca"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule series_figure:
    input:
        results=lambda w: [similarity_path(inst, inst) for _, inst in nguyen_series()[w.series]["members"]],
        pca=lambda w: [pca_path(inst) for _, inst in nguyen_series()[w.series]["members"]],
    output:
        figure=report(
            f"{RESULTS}/figures/series/{{series}}.{FMT}",
            caption="../report/series.rst",
            category="Nguyen et al. 2021: block structure",
            subcategory="Over depth and width",
        ),
    params:
        instances=lambda w: [inst for _, inst in nguyen_series()[w.series]["members"]],
        labels=lambda w: [label for label, _ in nguyen_series()[w.series]["members"]],
        title=lambda w: nguyen_series()[w.series]["title"],
        max_labels=config["figures"]["max_labels"],
    log:
        f"{RESULTS}/logs/figures/series/{{series}}.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    wildcard_constraints:
        series="|".join(nguyen_series()) or "(?!)",
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
            category="Nguyen et al. 2021: block structure",
            subcategory="Summary",
        ),
    params:
        instances=block_instances(),
        layers=NGUYEN["block_structure"]["layers"],
        threshold=NGUYEN["block_structure"]["threshold"],
        depth_width=NGUYEN["block_structure"]["depth_series_width"],
        width_depths=NGUYEN["block_structure"]["width_series_depths"],
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
            category="Nguyen et al. 2021: block structure",
            subcategory="Across seeds",
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
