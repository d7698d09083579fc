"""Run the repository's Snakefile on a config in a temporary directory (for the workflow tests)."""

import re
import subprocess
import sys
from pathlib import Path

import yaml


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # layersim refuses YAML aliases in configs
        return True


def config_yaml(config: dict) -> str:
    """``config`` as YAML without anchors or aliases (a shared sub-dict is written out twice)."""
    return yaml.dump(config, Dumper=_NoAliases, sort_keys=False)

REPO = Path(__file__).resolve().parents[1]
# The CIFAR directories the full experiment configs name (relative to the working directory):
# an empty one stands for the data, so a dry run can list a full experiment's DAG without it.
CIFAR_STUBS = ("data/cifar10/cifar-10-batches-py", "data/cifar100/cifar-100-python")


def stub_cifar(workdir: Path) -> None:
    for stub in CIFAR_STUBS:
        (workdir / stub).mkdir(parents=True, exist_ok=True)


def run_snakemake(workdir: Path, config: dict | Path, *args: str, check: bool = True, cores: int = 2) -> subprocess.CompletedProcess:
    """``snakemake --configfile CONFIG --directory WORKDIR ARGS`` with the repo's Snakefile.

    ``config`` is a dict (written to ``workdir/config.yaml``) or the path of a config file.
    """
    if isinstance(config, dict):
        (workdir / "config.yaml").write_text(config_yaml(config))
        config = workdir / "config.yaml"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config), "--cores", str(cores), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(workdir: Path, config: dict | Path, *args: str) -> dict[str, int]:
    """Rule → job count of what a dry run would execute (empty when nothing is stale); the
    CIFAR data the full experiments name is stubbed (:func:`stub_cifar`)."""
    stub_cifar(workdir)
    out = run_snakemake(workdir, config, "-n", *args)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def run_experiment(tmp_path_factory, name: str) -> Path:
    """Run ``config/experiments/<name>.yaml`` in a fresh directory; returns its ``results/<name>``."""
    workdir = tmp_path_factory.mktemp(name)
    run_snakemake(workdir, REPO / "config" / "experiments" / f"{name}.yaml")
    return workdir / "results" / name
