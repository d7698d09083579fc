# MiniGrid PPO agents (thesis §3.5, Figures 3.6–3.8, Table 3.1; docs/papers.md):
# minigrid_train per (architecture, training grid, seed) → minigrid_compare per (architecture,
# training grid): every pair of seeds on every test grid → minigrid_summary: table + figures.
# Targets only when config `papers.minigrid.enabled`. Jobs in layersim.jobs.minigrid.


include: "helpers/minigrid.smk"


rule minigrid_train:
    output:
        checkpoint=f"{RESULTS}/minigrid/agents/{{arch}}-g{{grid}}-s{{seed}}.pt",
        record=f"{RESULTS}/minigrid/agents/{{arch}}-g{{grid}}-s{{seed}}.json",
    wildcard_constraints:
        arch="original|bottleneck",
        grid=r"\d+",
    params:
        ppo=sorted_params(MG["ppo"]),
        bottleneck=MG["bottleneck"],
        eval_episodes=MG["eval_episodes"],
    log:
        f"{RESULTS}/logs/minigrid/train/{{arch}}-g{{grid}}-s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/minigrid/train/{{arch}}-g{{grid}}-s{{seed}}.tsv"
    threads: 1
    resources:
        **rule_resources("train"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule minigrid_compare:
    input:
        checkpoints=lambda w: [f"{RESULTS}/minigrid/agents/{w.arch}-g{w.grid}-s{s}.pt" for s in MG["seeds"]],
        records=lambda w: [f"{RESULTS}/minigrid/agents/{w.arch}-g{w.grid}-s{s}.json" for s in MG["seeds"]],
    output:
        pairs=f"{RESULTS}/minigrid/pairs/{{arch}}-g{{grid}}.csv",
        arrays=f"{RESULTS}/minigrid/pairs/{{arch}}-g{{grid}}.npz",
    wildcard_constraints:
        arch="original|bottleneck",
        grid=r"\d+",
    params:
        test_grids=MG["test_grids"],
        rollout_episodes=MG["rollout_episodes"],
        rollout_seed=MG["rollout_seed"],
    log:
        f"{RESULTS}/logs/minigrid/compare/{{arch}}-g{{grid}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/minigrid/compare/{{arch}}-g{{grid}}.tsv"
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/job.py"


rule minigrid_summary:
    input:
        pairs=[f"{RESULTS}/minigrid/pairs/{a}-g{g}.csv" for a in MG["archs"] for g in MG["train_grids"]],
    output:
        table=f"{RESULTS}/minigrid/summary.csv",
        markdown=f"{RESULTS}/minigrid/summary.md",
        jsd_figure=report(f"{RESULTS}/figures/minigrid/cka_vs_jsd.{FMT}", caption="../report/minigrid.rst", category="MiniGrid PPO agents (thesis §3.5)", subcategory="CKA vs JSD"),
        rank_figure=report(f"{RESULTS}/figures/minigrid/cka_vs_rank.{FMT}", caption="../report/minigrid.rst", category="MiniGrid PPO agents (thesis §3.5)", subcategory="CKA vs rank"),
    log:
        f"{RESULTS}/logs/minigrid/summary.log",
    threads: 1
    resources:
        **rule_resources("figures"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/job.py"
