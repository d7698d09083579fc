# Metric vs function across architectures (thesis §3.3, Fig. 3.4, Table 3.1; docs/papers.md).
# The trained instances come from the ordinary train/extract rules; the untrained copies (the
# thesis' red points) from architectures_init + architectures_extract_untrained. Every target
# appears only when config `papers.architectures.enabled`. Jobs in layersim.jobs.architectures.


include: "helpers/architectures.smk"


rule architectures_init:
    output:
        checkpoint=f"{RESULTS}/architectures/untrained/models/{{model}}/s{{seed}}/e0.pt",
        history=f"{RESULTS}/architectures/untrained/models/{{model}}/s{{seed}}/e0.history.json",
    params:
        arch=lambda w: arch_params(w.model),
        train=lambda w: train_params(w.model),
        dataset=DATASET,
    log:
        f"{RESULTS}/logs/architectures/init/{{model}}-s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/architectures/init/{{model}}-s{{seed}}.tsv"
    threads: 1
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule architectures_extract_untrained:
    input:
        checkpoint=f"{RESULTS}/architectures/untrained/models/{{model}}/s{{seed}}/e0.pt",
    output:
        store=activation_store(f"{RESULTS}/architectures/untrained/activations/{{model}}-s{{seed}}-e0.zarr"),
    params:
        dataset=DATASET,
        batch_size=config["extract"]["batch_size"],
        shard_chunks=config["extract"]["shard_chunks"],
        dtype=config["extract"]["dtype"],
        layers=config["extract"]["layers"],
    log:
        f"{RESULTS}/logs/architectures/extract_untrained/{{model}}-s{{seed}}-e0.log",
    benchmark:
        f"{RESULTS}/benchmarks/architectures/extract_untrained/{{model}}-s{{seed}}-e0.tsv"
    threads: config["resources"]["extract"]["threads"]
    resources:
        **rule_resources("extract"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule architectures_pairs:
    input:
        trained=lambda w: [f"{RESULTS}/activations/{instance(m, s)}.zarr" for m in arch_models() for s in config["seeds"]],
        untrained=lambda w: [f"{RESULTS}/architectures/untrained/activations/{m}-s{s}-e0.zarr" for m in arch_models() for s in config["seeds"]] if ARCHITECTURES["untrained"] else [],
    output:
        table=f"{RESULTS}/architectures/pairs.csv",
    params:
        **{k: ARCHITECTURES[k] for k in ("layer", "metrics", "max_samples")},
    log:
        f"{RESULTS}/logs/architectures/pairs.log",
    benchmark:
        f"{RESULTS}/benchmarks/architectures/pairs.tsv"
    threads: config["resources"]["metrics"]["threads"]
    resources:
        **rule_resources("metrics"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule architectures_summary:
    input:
        pairs=f"{RESULTS}/architectures/pairs.csv",
    output:
        table=f"{RESULTS}/architectures/correlations.csv",
        markdown=f"{RESULTS}/architectures/correlations.md",
        figure=report(f"{RESULTS}/figures/architectures/metric_vs_function.{FMT}", caption="../report/architectures.rst", category="Metric vs function across architectures (thesis §3.3)", subcategory="Metric vs function"),
    params:
        layer=ARCHITECTURES["layer"],
        metrics=ARCHITECTURES["metrics"],
    log:
        f"{RESULTS}/logs/architectures/summary.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
