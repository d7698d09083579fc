# The thesis' existence proof (ch. 4, Table 4.1) on a frozen base model's features
# (docs/papers.md; jobs in layersim.jobs.existence). Config papers.existence.


include: "helpers/existence.smk"


rule existence_proof:
    input:
        store=lambda w: f"{RESULTS}/activations/{instance(paper_model('existence'), config['seeds'][0])}.zarr",
    output:
        table=f"{RESULTS}/existence/table.csv",
        markdown=f"{RESULTS}/existence/table.md",
        figure=report(f"{RESULTS}/figures/existence.{FMT}", caption="../report/existence.rst", category="Existence proof (thesis ch. 4)", subcategory="Table 4.1"),
    params:
        **{k: PAPERS["existence"][k] for k in ("layer", "d_ratios", "flip_fraction", "head_fraction", "head_steps", "seed")},
    log:
        f"{RESULTS}/logs/existence/table.log",
    benchmark:
        f"{RESULTS}/benchmarks/existence/table.tsv"
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
