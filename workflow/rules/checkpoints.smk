# Checkpoints over training (thesis §3.4; docs/papers.md; jobs in
# layersim.jobs.checkpoints): train_epochs writes one checkpoint per epoch k, extract_epoch fans out
# over them, checkpoint_compare compares each with the final one. Config papers.checkpoints.


include: "helpers/checkpoints.smk"


rule train_epochs:
    output:
        checkpoints=expand(f"{RESULTS}/checkpoints/{{{{model}}}}/s{{{{seed}}}}/e{{ep}}.pt", ep=ckpt_epochs()),
        history=f"{RESULTS}/checkpoints/{{model}}/s{{seed}}/history.json",
    params:
        epochs=ckpt_epochs(),
        arch=lambda w: arch_params(w.model),
        train=lambda w: train_params(w.model),
        dataset=DATASET,
    log:
        f"{RESULTS}/logs/train_epochs/{{model}}-s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_epochs/{{model}}-s{{seed}}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule extract_epoch:
    input:
        checkpoint=f"{RESULTS}/checkpoints/{{model}}/s{{seed}}/e{{epoch}}.pt",
    output:
        store=activation_store(f"{RESULTS}/checkpoint_activations/{{model}}-s{{seed}}-e{{epoch}}.zarr"),
    params:
        dataset=DATASET,
        batch_size=config["extract"]["batch_size"],
        shard_chunks=config["extract"]["shard_chunks"],
        dtype=config["extract"]["dtype"],
    log:
        f"{RESULTS}/logs/extract_epoch/{{model}}-s{{seed}}-e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_epoch/{{model}}-s{{seed}}-e{{epoch}}.tsv"
    threads: config["resources"]["extract"]["threads"]
    resources:
        **rule_resources("extract"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule checkpoint_compare:
    input:
        stores=lambda w: [f"{RESULTS}/checkpoint_activations/{w.model}-s{w.seed}-e{ep}.zarr" for ep in ckpt_epochs()],
    output:
        table=f"{RESULTS}/checkpoints/{{model}}/s{{seed}}/vs_final.csv",
    params:
        epochs=ckpt_epochs(),
        layers=CHECKPOINTS["layers"],
        max_samples=CHECKPOINTS["max_samples"],
        lr=lambda w: train_params(w.model)["lr"],
    log:
        f"{RESULTS}/logs/checkpoint_compare/{{model}}-s{{seed}}.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule checkpoints_summary:
    input:
        tables=lambda w: [f"{RESULTS}/checkpoints/{m}/s{s}/vs_final.csv" for m in ckpt_models() for s in config["seeds"]],
    output:
        table=f"{RESULTS}/checkpoints/summary.csv",
        figure=report(f"{RESULTS}/figures/checkpoints/over_training.{FMT}", caption="../report/checkpoints.rst", category="Checkpoints over training (thesis §3.4)", subcategory="CKA and JSD by epoch"),
        scatter=report(f"{RESULTS}/figures/checkpoints/checkpoint_cka_vs_jsd.{FMT}", caption="../report/checkpoints.rst", category="Checkpoints over training (thesis §3.4)", subcategory="CKA vs JSD"),
    log:
        f"{RESULTS}/logs/checkpoints/summary.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
