# Kornblith et al. 2019's layer-identification benchmark over the seeds of one model
# (layersim.experiments.kornblith; jobs in layersim.jobs.kornblith), and its Table 2 style figure.
# Config papers.kornblith.


include: "helpers/kornblith.smk"


rule identification:
    input:
        stores=lambda w: [f"{RESULTS}/activations/{inst}.zarr" for inst in identification_instances(w.model)],
    output:
        table=f"{RESULTS}/identification/{{model}}/accuracy.csv",
        similarity=directory(f"{RESULTS}/identification/{{model}}/similarity.zarr"),
    params:
        layers=KORNBLITH["layers"],
        metrics=KORNBLITH["metrics"],
        max_samples=KORNBLITH["max_samples"],
    log:
        f"{RESULTS}/logs/identification/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/identification/{{model}}.tsv"
    threads: config["resources"]["identification"]["threads"]
    resources:
        **rule_resources("identification"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule identification_figure:
    input:
        table=f"{RESULTS}/identification/{{model}}/accuracy.csv",
    output:
        figure=report(
            f"{RESULTS}/figures/identification/{{model}}.{FMT}",
            caption="../report/identification.rst",
            category="Kornblith et al. 2019: layer identification",
            subcategory="{model}",
        ),
    params:
        title=lambda w: f"Layer identification across seeds of {w.model} (Kornblith et al. 2019, Table 2)",
    log:
        f"{RESULTS}/logs/figures/identification/{{model}}.log",
    threads: config["resources"]["figures"]["threads"]
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
