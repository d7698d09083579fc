"""workflow/profiles/tpu with a stand-in `gcloud` first on PATH.

The stand-in records every call (one JSON list of arguments per line) and plays the TPU VM
locally: `queued-resources describe` answers ACTIVE, `tpu-vm scp` copies, `tpu-vm ssh
--command=...` runs the command here (exiting with FAKE_GCLOUD_SSH_EXIT instead when set, as a
job failing on the VM). Nothing here touches Google Cloud.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_runner import config_yaml
import yte

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "tpu"

STAND_IN = r'''#!/usr/bin/env python3
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:4] == ["compute", "tpus", "queued-resources", "describe"]:
    print("ACTIVE")
elif args[:4] == ["compute", "tpus", "tpu-vm", "scp"]:
    shutil.copy(args[4], args[5].split(":", 1)[1])
elif args[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
    command = next(a.split("=", 1)[1] for a in args if a.startswith("--command="))
    rc = subprocess.run(["bash", "-c", command]).returncode
    sys.exit(int(os.environ.get("FAKE_GCLOUD_SSH_EXIT", rc)))
'''

TINY = {
    "experiment": "tiny",
    "dataset": {"name": "digits", "eval_fraction": 0.1, "split_seed": 0, "image_size": 8},
    "train": {"epochs": 1, "batch_size": 64},
    "models": {"m8x1": {"depth": 8, "width": 1}},
    "seeds": [0],
    "extract": {"batch_size": 32, "shard_chunks": 2},
    "similarity": {"batch_size": 64, "passes": 2, "layer_block": 8, "compare": {"self": True, "across_seeds": False, "pairs": []}},
    "resources": {"similarity": {"threads": 1}},
}
TARGET = "results/tiny/models/m8x1/s0/e1.pt"
SETTINGS = {"LAYERSIM_TPU_PROJECT": "proj-1", "LAYERSIM_TPU_ZONE": "us-central2-b", "LAYERSIM_TPU_TYPE": "v4-8", "LAYERSIM_TPU_RUNTIME": "tpu-ubuntu2204-base"}


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(STAND_IN)
    gcloud.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERSIM_TPU_")}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_GCLOUD_LOG=str(tmp_path / "gcloud.log"), **SETTINGS)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def snakemake(tmp_path: Path, env: dict[str, str], *args: str, profile: Path = PROFILE) -> subprocess.CompletedProcess:
    (tmp_path / "config.yaml").write_text(config_yaml(TINY))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--profile", str(profile),
           "--seconds-between-status-checks", "1", "--latency-wait", "5", "--retries", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "gcloud.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_job_runs_on_a_queued_tpu_vm_and_is_cleaned_up(tmp_path):
    result = snakemake(tmp_path, environment(tmp_path), TARGET)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / TARGET).stat().st_size > 1000
    issued = calls(tmp_path)
    assert [c[:4] for c in issued] == [
        ["compute", "tpus", "queued-resources", "create"],
        ["compute", "tpus", "queued-resources", "describe"],
        ["compute", "tpus", "tpu-vm", "scp"],
        ["compute", "tpus", "tpu-vm", "ssh"],
        ["compute", "tpus", "queued-resources", "delete"],
    ], issued
    name = issued[0][4]
    assert re.fullmatch(r"layersim-train-\d+-[0-9a-f]{8}", name)
    where = ["--project=proj-1", "--zone=us-central2-b"]
    create, describe, scp, ssh, delete = issued
    assert create == ["compute", "tpus", "queued-resources", "create", name, f"--node-id={name}", *where,
                      "--accelerator-type=v4-8", "--runtime-version=tpu-ubuntu2204-base"]
    assert describe == ["compute", "tpus", "queued-resources", "describe", name, *where, "--format=value(state.state)"]
    remote = f"/tmp/layersim-{name}.sh"
    assert scp[:4] + scp[5:] == ["compute", "tpus", "tpu-vm", "scp", f"{name}:{remote}", *where, "--worker=0"]
    assert "snakejob.train" in Path(scp[4]).name
    assert ssh == ["compute", "tpus", "tpu-vm", "ssh", name, *where, "--worker=0", f"--command=bash {remote}"]
    assert delete == ["compute", "tpus", "queued-resources", "delete", name, *where, "--force", "--quiet"]


def test_failed_job_on_the_vm_is_reported_failed(tmp_path):
    result = snakemake(tmp_path, environment(tmp_path, FAKE_GCLOUD_SSH_EXIT="3"), TARGET)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert re.search(r"Error in rule train", text), text[-3000:]
    assert re.search(r"external jobid: layersim-train-", text) or "layersim-train-" in text
    assert not (tmp_path / TARGET).exists()
    # the VM is still deleted after a failure
    assert calls(tmp_path)[-1][:4] == ["compute", "tpus", "queued-resources", "delete"]


def test_existing_vm_is_reused_without_create_or_delete(tmp_path):
    result = snakemake(tmp_path, environment(tmp_path, LAYERSIM_TPU_VM="my-tpu"), TARGET)
    assert result.returncode == 0, result.stderr[-5000:]
    assert [c[:5] for c in calls(tmp_path)] == [["compute", "tpus", "tpu-vm", "scp", calls(tmp_path)[0][4]], ["compute", "tpus", "tpu-vm", "ssh", "my-tpu"]]


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"LAYERSIM_TPU_TYPE": "v9-8"}, r"LAYERSIM_TPU_TYPE='v9-8' is not a recognised TPU type; known: .*v5litepod-"),
        ({"LAYERSIM_TPU_TYPE": "v4-7"}, r"'v4-7' is not a recognised TPU type"),
        ({"LAYERSIM_TPU_ZONE": None}, r"set LAYERSIM_TPU_ZONE"),
    ],
)
def test_bad_settings_stop_before_anything_is_created(tmp_path, extra, message):
    env = environment(tmp_path, **{k: v for k, v in extra.items() if v is not None})
    for k, v in extra.items():
        if v is None:
            env.pop(k)
    result = snakemake(tmp_path, env, TARGET)
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert calls(tmp_path) == []


def test_unknown_profile_key_is_named(tmp_path):
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE, profile)
    with open(profile / "config.yaml", "a") as f:
        f.write("cluster-generic-sumbit-cmd: submit.py\n")
    result = snakemake(tmp_path, environment(tmp_path), "-n", TARGET, profile=profile)
    assert result.returncode != 0
    assert "unrecognized arguments: --cluster-generic-sumbit-cmd" in result.stderr


def test_bucket_switches_inputs_and_outputs_to_gcs(monkeypatch):
    for k, v in {**SETTINGS, "LAYERSIM_TPU_BUCKET": "gs://my-bucket/layersim"}.items():
        monkeypatch.setenv(k, v)
    with open(PROFILE / "config.yaml") as f:
        parsed = yte.process_yaml(f, require_use_yte=True)
    assert parsed["default-storage-provider"] == "gcs"
    assert parsed["default-storage-prefix"] == "gs://my-bucket/layersim"
    assert parsed["storage-gcs-project"] == "proj-1"
    assert parsed["shared-fs-usage"] == "none"
    monkeypatch.delenv("LAYERSIM_TPU_BUCKET")
    with open(PROFILE / "config.yaml") as f:
        assert "default-storage-provider" not in yte.process_yaml(f, require_use_yte=True)


def test_training_picks_tpu_strategy_when_a_tpu_is_found(monkeypatch):
    """On the VM, keras training asks TPUClusterResolver; a found TPU means TPUStrategy."""
    keras_train = pytest.importorskip("layersim.train.keras")
    assert "TPUStrategy" in (keras_train.select_strategy.__doc__ or "") + (keras_train.__doc__ or "")
