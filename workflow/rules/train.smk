# Stage 1: train one model instance (layersim.train.train_torch).


rule train:
    output:
        checkpoint=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.pt",
        history=f"{RESULTS}/models/{{model}}/s{{seed}}/e{{epoch}}.history.json",
    params:
        arch=lambda w: arch_params(w.model),
        train=lambda w: train_params(w.model),
        dataset=config["dataset"],
    log:
        f"{RESULTS}/logs/train/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"
