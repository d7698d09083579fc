# Johnson (2019) Example 3.1 under subspace match, CKA, CCA and Procrustes (docs/papers.md;
# jobs in layersim.jobs.johnson). Config papers.johnson; no training.


include: "helpers/johnson.smk"


rule johnson_table:
    output:
        table=f"{RESULTS}/johnson/table.csv",
        markdown=f"{RESULTS}/johnson/table.md",
    params:
        epsilons=PAPERS["johnson"]["epsilons"],
    log:
        f"{RESULTS}/logs/johnson/table.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
