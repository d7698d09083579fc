# Representation sets told apart by an SVM, and their t-SNE (thesis §3.1, Figs. 3.1 and 3.2;
# docs/papers.md; jobs in layersim.jobs.representation_sets). Config:
# papers.representation_sets. One model per (training dataset or `untrained`, seed); its features
# on each test dataset are one set. Targets only when enabled.


include: "helpers/representation_sets.smk"


rule representation_train:
    output:
        checkpoint=f"{RESULTS}/representation_sets/models/{{trained_on}}-s{{seed}}.pt",
        history=f"{RESULTS}/representation_sets/models/{{trained_on}}-s{{seed}}.history.json",
    params:
        arch=lambda w: arch_params(rs_model()),
        train=lambda w: train_params(rs_model()),
        dataset_name=lambda w: rs_train_dataset(w.trained_on),
        dataset=lambda w: rs_dataset(rs_train_dataset(w.trained_on)),
    log:
        f"{RESULTS}/logs/representation_sets/train/{{trained_on}}-s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_sets/train/{{trained_on}}-s{{seed}}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    wildcard_constraints:
        trained_on=rs_models_regex(),
    script:
        "../scripts/job.py"


rule representation_extract:
    input:
        checkpoint=f"{RESULTS}/representation_sets/models/{{trained_on}}-s{{seed}}.pt",
    output:
        store=directory(f"{RESULTS}/representation_sets/activations/{{trained_on}}-s{{seed}}__{{tested_on}}.zarr"),
    params:
        dataset=lambda w: rs_dataset(w.tested_on),
        layer=RS["layer"],
        samples_per_set=RS["samples_per_set"],
        seed=RS["seed"],
        batch_size=config["extract"]["batch_size"],
    log:
        f"{RESULTS}/logs/representation_sets/extract/{{trained_on}}-s{{seed}}__{{tested_on}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_sets/extract/{{trained_on}}-s{{seed}}__{{tested_on}}.tsv"
    threads: config["resources"]["extract"]["threads"]
    resources:
        **rule_resources("extract"),
    conda:
        "../../envs/torch.yaml"
    wildcard_constraints:
        trained_on=rs_models_regex(),
        tested_on=r"[A-Za-z0-9]+",
    script:
        "../scripts/job.py"


rule representation_svm:
    input:
        stores=lambda w: rs_stores(),
    output:
        confusion=f"{RESULTS}/representation_sets/confusion.csv",
        per_set=f"{RESULTS}/representation_sets/per_set.csv",
        summary=f"{RESULTS}/representation_sets/summary.csv",
        figure=report(f"{RESULTS}/figures/representation_sets/confusion.{FMT}", caption="../report/representation_sets.rst", category="Representation sets (thesis §3.1)", subcategory="SVM confusion"),
    params:
        test_fraction=RS["test_fraction"],
        C=RS["svm_C"],
        max_iter=RS["svm_max_iter"],
        seed=RS["seed"],
    log:
        f"{RESULTS}/logs/representation_sets/svm.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_sets/svm.tsv"
    threads: 1
    resources:
        **rule_resources("metrics"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"


rule representation_tsne:
    input:
        stores=lambda w: rs_stores(),
    output:
        table=f"{RESULTS}/representation_sets/tsne.csv",
        figure=report(f"{RESULTS}/figures/representation_sets/tsne.{FMT}", caption="../report/representation_sets.rst", category="Representation sets (thesis §3.1)", subcategory="t-SNE"),
    params:
        per_set=RS["tsne_per_set"],
        perplexity=RS["tsne_perplexity"],
        seed=RS["seed"],
    log:
        f"{RESULTS}/logs/representation_sets/tsne.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_sets/tsne.tsv"
    threads: 1
    resources:
        **rule_resources("metrics"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
