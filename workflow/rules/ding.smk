# Ding & Steinhardt (2021): layer depth / seeds and PC deletion vs linear-probe accuracy
# (docs/papers.md; jobs in layersim.jobs.ding). Config papers.ding.


include: "helpers/ding.smk"


rule ding_benchmark:
    input:
        stores=lambda w: [f"{RESULTS}/activations/{instance(paper_model('ding'), s)}.zarr" for s in config["seeds"]],
    output:
        depth=f"{RESULTS}/ding/layer_depth.csv",
        pc_deletion=f"{RESULTS}/ding/pc_deletion.csv",
        summary=f"{RESULTS}/ding/summary.csv",
        depth_figure=report(f"{RESULTS}/figures/ding/layer_depth.{FMT}", caption="../report/ding.rst", category="Ding, Denain & Steinhardt 2021", subcategory="Layer depth"),
        pc_figure=report(f"{RESULTS}/figures/ding/pc_deletion.{FMT}", caption="../report/ding.rst", category="Ding, Denain & Steinhardt 2021", subcategory="PC deletion"),
    params:
        seeds=config["seeds"],
        **{k: PAPERS["ding"][k] for k in ("layers", "pc_layer", "pc_deletions", "metrics", "max_samples")},
    log:
        f"{RESULTS}/logs/ding/benchmark.log",
    benchmark:
        f"{RESULTS}/benchmarks/ding/benchmark.tsv"
    threads: config["resources"]["metrics"]["threads"]
    resources:
        **rule_resources("metrics"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
