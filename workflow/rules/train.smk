# Stage 1: train one model instance: torch models with layersim.train.torch.train_torch (.pt),
# Keras models with layersim.train.keras.train_keras (.keras).


rule train:
    output:
        checkpoint=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.pt",
        history=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.history.json",
    params:
        arch=lambda w: arch_params(w.model),
        train=lambda w: train_params(w.model),
        dataset=DATASET,
    log:
        f"{RESULTS}/logs/train/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    wildcard_constraints:
        model=models_of("torch"),
    script:
        "../scripts/job.py"


rule train_keras:
    output:
        checkpoint=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.keras",
        history=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.history.json",
    params:
        arch=lambda w: arch_params(w.model),
        train=lambda w: train_params(w.model),
        dataset=DATASET,
    log:
        f"{RESULTS}/logs/train/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/keras.yaml"
    wildcard_constraints:
        model=models_of("keras"),
    script:
        "../scripts/job.py"
