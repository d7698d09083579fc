# Stage 4: figures (layersim.plots). Wrapped in report() for `snakemake --report`.


rule heatmap:
    input:
        result=f"{RESULTS}/similarity/cka/{{a}}__{{b}}.zarr",
    output:
        figure=report(
            f"{RESULTS}/figures/heatmaps/{{a}}__{{b}}.{FMT}",
            caption="../report/heatmap.rst",
            category="CKA heatmaps",
            subcategory=comparison_kind,
        ),
    params:
        max_labels=config["figures"]["max_labels"],
    log:
        f"{RESULTS}/logs/figures/heatmaps/{{a}}__{{b}}.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule self_similarity_grid:
    input:
        results=lambda w: [similarity_path(inst, inst) for _, _, inst in grid_cells()[2]],
    output:
        figure=report(
            f"{RESULTS}/figures/self_similarity_grid.{FMT}",
            caption="../report/grid.rst",
            category="CKA heatmaps",
            subcategory="Self-similarity grid (depth × width)",
        ),
    params:
        depths=grid_cells()[0],
        widths=grid_cells()[1],
        cells=grid_cells()[2],
    log:
        f"{RESULTS}/logs/figures/self_similarity_grid.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule metrics_figure:
    input:
        results=lambda w: [similarity_path(w.a, w.b)]
        + [f"{RESULTS}/similarity/{m}/{w.a}__{w.b}.zarr" for m in config["metrics"]["names"]],
    output:
        figure=report(
            f"{RESULTS}/figures/metrics/{{a}}__{{b}}_metrics.{FMT}",
            caption="../report/metrics.rst",
            category="Metrics side by side",
            subcategory="{a} vs {b}",
        ),
    params:
        max_labels=config["figures"]["max_labels"],
    log:
        f"{RESULTS}/logs/figures/metrics/{{a}}__{{b}}.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
