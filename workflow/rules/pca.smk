# Stage 3d: the first principal component's share of variance per layer of one store, read
# batch-wise (layersim.experiments.nguyen.pc_shares): Nguyen et al. 2021's probe of the block structure.


rule pca:
    input:
        store=f"{RESULTS}/activations/{{model}}-s{{seed}}-e{{epoch}}.zarr",
    output:
        table=f"{RESULTS}/pca/{{model}}-s{{seed}}-e{{epoch}}.csv",
    params:
        block_rows=config["pca"]["block_rows"],
        max_gram_features=config["pca"]["max_gram_features"],
        oversamples=config["pca"]["oversamples"],
        n_iter=config["pca"]["n_iter"],
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
