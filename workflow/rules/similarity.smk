# Stage 3: minibatch CKA over every layer pair of two stores. Each instance's Grams are computed
# once (rule grams, layersim.engine.write_gram_store); every pair it is in reads them (rule
# similarity, layersim.engine.compare_gram_stores).


# The numpy Gram kernel of this machine (similarity.gram_kernel: auto), timed once per results
# directory so that every grams job, and any rerun of one, uses the same kernel
# (layersim.engine.grams.measure_gram_kernels).


rule gram_kernel:
    output:
        kernel=f"{RESULTS}/gram_kernel.json",
    params:
        batch_size=config["similarity"]["batch_size"],
        dtype=config["similarity"]["dtype"],
    log:
        f"{RESULTS}/logs/gram_kernel.log",
    threads: 1
    resources:
        **rule_resources("similarity", gpu=False),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule grams:
    input:
        store=f"{RESULTS}/activations/{{instance}}.zarr",
        kernel=f"{RESULTS}/gram_kernel.json" if config["similarity"]["gram_kernel"] == "auto" else [],
    output:
        grams=gram_store(f"{RESULTS}/grams/{{instance}}.zarr"),
    params:
        batch_size=config["similarity"]["batch_size"],
        passes=config["similarity"]["passes"],
        dtype=config["similarity"]["dtype"],
        layer_block=config["similarity"]["layer_block"],
        cache_mb=config["similarity"]["cache_mb"],
        scheduler_address=config["similarity"]["scheduler_address"],
        gram_kernel=config["similarity"]["gram_kernel"],
    log:
        f"{RESULTS}/logs/grams/{{instance}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/grams/{{instance}}.tsv"
    threads: config["resources"]["similarity"]["threads"]
    resources:
        **rule_resources("similarity"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule similarity:
    input:
        a=f"{RESULTS}/grams/{{a}}.zarr",
        b=f"{RESULTS}/grams/{{b}}.zarr",
    output:
        result=directory(f"{RESULTS}/similarity/cka/{{a}}__{{b}}.zarr"),
    log:
        f"{RESULTS}/logs/similarity/cka/{{a}}__{{b}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/similarity/cka/{{a}}__{{b}}.tsv"
    threads: config["resources"]["similarity"]["threads"]
    resources:
        **rule_resources("similarity", gpu=False),  # products of stored Grams: no GPU
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


# Stage 3b: full-batch metrics of layersim.metrics over every selected layer pair
# (layersim.layerwise.metric_matrix).


rule metric_similarity:
    input:
        a=f"{RESULTS}/activations/{{a}}.zarr",
        b=f"{RESULTS}/activations/{{b}}.zarr",
    output:
        result=directory(f"{RESULTS}/similarity/{{metric}}/{{a}}__{{b}}.zarr"),
    params:
        layer_stride=config["metrics"]["layer_stride"],
        max_samples=config["metrics"]["max_samples"],
    log:
        f"{RESULTS}/logs/similarity/{{metric}}/{{a}}__{{b}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/similarity/{{metric}}/{{a}}__{{b}}.tsv"
    threads: config["resources"]["metrics"]["threads"]
    resources:
        **rule_resources("metrics"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
