# Stage 2: every layer's output over the evaluation split → one Zarr store per instance
# (layersim.extract.torch.extract_torch, or layersim.extract.keras.extract_keras for .keras models).


rule extract:
    input:
        checkpoint=lambda w: checkpoint_path(w.model, w.seed, w.epoch),
    output:
        store=activation_store(f"{RESULTS}/activations/{{model}}-s{{seed}}-e{{epoch}}.zarr"),
    params:
        dataset=DATASET,
        batch_size=config["extract"]["batch_size"],
        shard_chunks=config["extract"]["shard_chunks"],
        dtype=config["extract"]["dtype"],
        layers=config["extract"]["layers"],
    log:
        f"{RESULTS}/logs/extract/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["extract"]["threads"]
    resources:
        **rule_resources("extract"),
    conda:
        "../../envs/keras.yaml"
    script:
        "../scripts/job.py"
