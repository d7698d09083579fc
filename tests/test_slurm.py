"""The tiny workflow through workflow/profiles/slurm on a real one-node SLURM started here.

Needs root and Debian's slurmctld/slurmd/slurm-client/munge (installed with apt-get when
missing; skipped with the reason when that is impossible). Run alone: `pytest -m slurm`.
Job status: `--slurm-status-command squeue` (no slurmdbd; MinJobAge=3600 keeps finished jobs
in squeue). See tests/slurm_cluster.py and docs/cluster.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from workflow_runner import config_yaml

from slurm_cluster import LocalSlurm, ensure_installed

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"

SMALL = {"threads": 1, "mem_mb": 600, "runtime": 20}
TINY = {
    "experiment": "tiny",
    "dataset": {"name": "digits", "eval_fraction": 0.1, "split_seed": 0, "image_size": 8},
    "train": {"epochs": 1, "batch_size": 64},
    "models": {"m8x1": {"depth": 8, "width": 1}},
    "seeds": [0, 1],
    "extract": {"batch_size": 32, "shard_chunks": 2},
    # one Gram kernel for both runs: results are compared bit for bit with the local run, whose
    # own timing (gram_kernel: auto) could pick another kernel (the same Grams up to rounding)
    "similarity": {"batch_size": 64, "passes": 2, "layer_block": 8, "gram_kernel": "syrk", "compare": {"self": True, "across_seeds": True, "pairs": []}},
    # train asks for a GPU: on SLURM that is `sbatch --gpus=1`, scheduled on the node's gpu GRES
    "resources": {"train": {**SMALL, "gpu": 1}, "extract": SMALL, "similarity": SMALL, "figures": SMALL},
}
INSTANCES = ["m8x1-s0-e1", "m8x1-s1-e1"]
PAIRS = [(a, a) for a in INSTANCES] + [(INSTANCES[0], INSTANCES[1])]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = ensure_installed()
    if reason:
        pytest.skip(f"no local SLURM: {reason}")
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm-state"), gpus=1)
    try:
        slurm.start()
    except Exception:
        slurm.stop()
        raise
    yield slurm
    slurm.stop()


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(config_yaml(config))
    return path


def snakemake_cmd(workdir: Path, *args: str, profile: Path | None = PROFILE) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    if profile is not None:
        # squeue: there is no slurmdbd; the first status check after 2 s instead of 40 s
        cmd += ["--profile", str(profile), "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--verbose"]
    return cmd + list(args)


def run(cmd: list[str], env: dict[str, str], check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-8000:]}")
    return result


def user_env(cluster: LocalSlurm, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if not k.startswith("LAYERSIM_SLURM_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    write_config(workdir, TINY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    run(snakemake_cmd(workdir, "--cores", "2", profile=None), env)
    return workdir


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, TINY)
    planned = run(snakemake_cmd(workdir, "-n", "--cores", "1", profile=None), cluster.env).stdout
    table = planned[planned.index("Job stats:"):]
    # rule -> job count; `all` runs on the login node, every other job goes to SLURM
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) not in ("total", "all")}
    started = time.monotonic()
    result = run(snakemake_cmd(workdir), user_env(cluster))
    return workdir, result.stdout + result.stderr, time.monotonic() - started, jobs


def checkpoint(workdir: Path, inst: str) -> dict:
    model, seed, epoch = inst.split("-")
    return torch.load(workdir / "results" / "tiny" / "models" / model / seed / f"{epoch}.pt", weights_only=True)


def sbatch_calls(log: str) -> list[str]:
    return re.findall(r"sbatch call: (sbatch .*)", log)


def test_every_job_went_through_slurm(cluster, slurm_run):
    workdir, log, seconds, planned = slurm_run
    print(f"SLURM run of the tiny workflow: {seconds:.0f} s")
    n_jobs = sum(planned.values())
    assert planned["train"] == 2 and planned["similarity"] == 3
    calls = sbatch_calls(log)
    assert len(calls) == n_jobs, "\n".join(calls)
    job_ids = set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))
    assert len(job_ids) == n_jobs, log[-5000:]
    # the cluster's own record: every one of them completed, on the node
    history = {j["id"]: j for j in cluster.jobs()}
    completed = {row["JobId"]: row for row in cluster.completed()}
    for job_id in job_ids:
        assert history[job_id]["state"] == "COMPLETED", history[job_id]
        assert completed[job_id]["JobState"] == "COMPLETED" and completed[job_id]["NodeList"] == "localhost"
    rules = sorted(re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", history[j]["comment"]).group(1) for j in job_ids)
    assert rules == sorted(r for r, n in planned.items() for _ in range(n))


def test_gpu_rule_requests_and_gets_the_gres(cluster, slurm_run):
    workdir, log, _, _ = slurm_run
    calls = sbatch_calls(log)
    train = [c for c in calls if "rule_train" in c]
    other = [c for c in calls if "rule_train" not in c]
    assert len(train) == 2 and all("--gpus=1" in c for c in train), train
    assert not any("--gpus" in c or "--gres" in c for c in other)
    # scheduled on the GRES: slurmctld allocated gres/gpu=1 to each train job
    for job in cluster.jobs():
        if job["comment"].startswith("rule_train"):
            shown = cluster.show_job(job["id"])
            assert re.search(r"TresPerJob=gres:gpu:1", shown), shown
            detail = cluster.run("scontrol", "-d", "show", "job", job["id"]).stdout
            assert re.search(r"JOB_GRES=gpu:1\b", detail), detail  # what slurmctld allocated
        else:
            assert "gpu" not in cluster.show_job(job["id"])


def test_outputs_equal_a_local_run(slurm_run, local_run):
    workdir, _, _, _ = slurm_run
    for inst in INSTANCES:
        a, b = checkpoint(workdir, inst), checkpoint(local_run, inst)
        state_a = a.get("state_dict", a) if isinstance(a, dict) else a
        state_b = b.get("state_dict", b) if isinstance(b, dict) else b
        _assert_equal_nested(state_a, state_b)
    for x, y in PAIRS:
        path = Path("results") / "tiny" / "similarity" / "cka" / f"{x}__{y}.zarr"
        got = xr.open_zarr(workdir / path)["cka"]
        want = xr.open_zarr(local_run / path)["cka"]
        assert list(got["layer_a"].values) == list(want["layer_a"].values)
        np.testing.assert_array_equal(got.values, want.values)
    for png in ["self_similarity_grid.png", f"heatmaps/{INSTANCES[0]}__{INSTANCES[1]}.png"]:
        assert (workdir / "results" / "tiny" / "figures" / png).stat().st_size > 1000


def _assert_equal_nested(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal_nested(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal_nested(x, y)
    else:
        assert a == b


def test_killed_job_fails_is_cleaned_and_reruns(cluster, local_run, tmp_path):
    """scancel a running train job: Snakemake reports it failed, removes its output, a rerun completes it."""
    config = json.loads(json.dumps(TINY))
    config["seeds"] = [0]
    write_config(tmp_path, config)
    target = "results/tiny/models/m8x1/s0/e1.pt"
    out = tmp_path / target
    cmd = snakemake_cmd(tmp_path, "--retries", "0", target)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env(cluster))
    killed = None
    deadline = time.monotonic() + 180
    before = {j["id"] for j in cluster.jobs()}
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for job in cluster.jobs():
            if job["id"] not in before and job["comment"].startswith("rule_train") and job["state"] == "RUNNING":
                # what a half-written checkpoint would leave behind
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(b"partial")
                cluster.run("scancel", job["id"], check=True)
                killed = job["id"]
                break
        time.sleep(0.3)
    log, _ = proc.communicate(timeout=300)
    assert killed, f"no running train job to kill:\n{log[-3000:]}"
    assert proc.returncode != 0, log[-3000:]
    assert re.search(rf"SLURM-job '{killed}' failed, SLURM status is: 'CANCELLED'", log), log[-4000:]
    assert re.search(r"Error in rule train", log), log[-4000:]
    assert not out.exists(), "Snakemake left the killed job's partial output"
    assert {r["JobId"]: r for r in cluster.completed()}[killed]["JobState"] == "CANCELLED"
    rerun = run(snakemake_cmd(tmp_path, "--retries", "0", target), user_env(cluster))
    assert len(sbatch_calls(rerun.stdout + rerun.stderr)) == 1
    _assert_equal_nested(torch.load(out, weights_only=True), checkpoint(local_run, "m8x1-s0-e1"))


def test_unknown_profile_key_is_named(cluster, tmp_path):
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE, profile)
    with open(profile / "config.yaml", "a") as f:
        f.write("latency-wiat: 5\n")
    write_config(tmp_path, TINY)
    result = run(snakemake_cmd(tmp_path, "-n", profile=profile), user_env(cluster), check=False)
    assert result.returncode != 0
    assert "unrecognized arguments: --latency-wiat=5" in result.stderr


def test_missing_partition_where_required_is_a_clear_error(cluster, tmp_path):
    """Without a default partition, a job with no partition is rejected with SLURM's reason; the
    partition from LAYERSIM_SLURM_PARTITION is passed as `-p` and the job runs."""
    config = json.loads(json.dumps(TINY))
    config["seeds"] = [0]
    config["resources"]["train"] = dict(SMALL)  # no GPU: only the partition matters here
    write_config(tmp_path, config)
    target = "results/tiny/models/m8x1/s0/e1.pt"
    cluster.run("scontrol", "update", f"PartitionName={cluster.partition}", "Default=NO", check=True)
    try:
        bad = run(snakemake_cmd(tmp_path, "--retries", "0", target), user_env(cluster), check=False)
        text = bad.stdout + bad.stderr
        assert bad.returncode != 0
        assert "No partition was given for rule" in text, text[-3000:]
        assert "No partition specified or system default partition" in text, text[-3000:]
        good = run(snakemake_cmd(tmp_path, "--retries", "0", target), user_env(cluster, LAYERSIM_SLURM_PARTITION=cluster.partition))
        [call] = sbatch_calls(good.stdout + good.stderr)
        assert f"-p {cluster.partition}" in call
    finally:
        cluster.run("scontrol", "update", f"PartitionName={cluster.partition}", "Default=YES", check=True)
