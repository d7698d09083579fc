# Stage 3c: functional similarity of two instances from their stored logits
# (layersim.layerwise.functional_similarity).


rule functional:
    input:
        a=f"{RESULTS}/activations/{{a}}.zarr",
        b=f"{RESULTS}/activations/{{b}}.zarr",
    output:
        result=f"{RESULTS}/functional/{{a}}__{{b}}.json",
    log:
        f"{RESULTS}/logs/functional/{{a}}__{{b}}.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
