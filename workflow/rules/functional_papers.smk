# Functional-similarity papers (issue 9; docs/papers_functional.md): Johnson (2019) Example 3.1,
# the thesis' existence proof (Table 4.1), checkpoints over training, Ding & Steinhardt's
# benchmark. Every target appears only when config `functional_papers.<experiment>.enabled`.


rule johnson_table:
    output:
        table=f"{RESULTS}/johnson/table.csv",
        markdown=f"{RESULTS}/johnson/table.md",
    params:
        epsilons=FP["johnson"]["epsilons"],
    log:
        f"{RESULTS}/logs/johnson/table.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule existence_proof:
    input:
        store=lambda w: f"{RESULTS}/activations/{instance(fp_model('existence'), config['seeds'][0])}.zarr",
    output:
        table=f"{RESULTS}/existence/table.csv",
        markdown=f"{RESULTS}/existence/table.md",
        figure=report(f"{RESULTS}/figures/existence.{FMT}", caption="../report/existence.rst", category="Functional similarity"),
    params:
        **{k: FP["existence"][k] for k in ("layer", "d_ratios", "flip_fraction", "head_fraction", "head_steps", "seed")},
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


# --- Checkpoints over training (thesis §3.4): train_epochs writes one checkpoint per epoch k,
# extract_epoch fans out over them, checkpoint_compare compares each with the final one.


rule train_epochs:
    output:
        checkpoints=expand(f"{RESULTS}/checkpoints/{{{{model}}}}/s{{{{seed}}}}/e{{ep}}.pt", ep=ckpt_epochs()),
        history=f"{RESULTS}/checkpoints/{{model}}/s{{seed}}/history.json",
    params:
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
        store=directory(f"{RESULTS}/checkpoint_activations/{{model}}-s{{seed}}-e{{epoch}}.zarr"),
    params:
        dataset=DATASET,
        batch_size=config["extract"]["batch_size"],
        shard_chunks=config["extract"]["shard_chunks"],
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
        layers=FP["checkpoints"]["layers"],
        max_samples=FP["checkpoints"]["max_samples"],
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
        figure=report(f"{RESULTS}/figures/checkpoints/over_training.{FMT}", caption="../report/checkpoints.rst", category="Functional similarity"),
        scatter=report(f"{RESULTS}/figures/checkpoints/cka_vs_jsd.{FMT}", caption="../report/checkpoints.rst", category="Functional similarity"),
    log:
        f"{RESULTS}/logs/checkpoints/summary.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


# --- Ding & Steinhardt (2021): layer depth / seeds and PC deletion vs linear-probe accuracy.


rule ding_benchmark:
    input:
        stores=lambda w: [f"{RESULTS}/activations/{instance(fp_model('ding'), s)}.zarr" for s in config["seeds"]],
    output:
        depth=f"{RESULTS}/ding/layer_depth.csv",
        pc_deletion=f"{RESULTS}/ding/pc_deletion.csv",
        summary=f"{RESULTS}/ding/summary.csv",
        depth_figure=report(f"{RESULTS}/figures/ding/layer_depth.{FMT}", caption="../report/ding.rst", category="Functional similarity"),
        pc_figure=report(f"{RESULTS}/figures/ding/pc_deletion.{FMT}", caption="../report/ding.rst", category="Functional similarity"),
    params:
        **{k: FP["ding"][k] for k in ("layers", "pc_layer", "pc_deletions", "metrics", "max_samples")},
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
