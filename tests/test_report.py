"""What ``snakemake --report`` shows for every shipped config, read from each config's job DAG
(nothing runs): each reported output sits in a category and subcategory, and no two share a file
name. (tests/test_workflow.py builds the report of a real run.)"""

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from workflow_runner import REPO, stub_cifar

pytestmark = pytest.mark.slow

CONFIGS = [REPO / "config" / "config.yaml", *sorted((REPO / "config" / "experiments").glob("*.yaml"))]


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> dict[str, list[list[str]]]:
    """config file name → [rule, path, category, subcategory] of each reported output."""
    workdir = tmp_path_factory.mktemp("report_outputs")
    stub_cifar(workdir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    script = Path(__file__).with_name("report_outputs.py")
    out = subprocess.run([sys.executable, str(script), str(workdir), *map(str, CONFIGS)], capture_output=True, text=True, env=env, cwd=workdir)
    assert out.returncode == 0, out.stderr[-4000:]
    return {Path(config).name: rows for config, rows in json.loads(out.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("config", [c.name for c in CONFIGS])
def test_reported_outputs_have_unique_names(reported, config):
    names = Counter(Path(path).name for _, path, _, _ in reported[config])
    assert [name for name, n in names.items() if n > 1] == []


@pytest.mark.parametrize("config", [c.name for c in CONFIGS])
def test_reported_outputs_sit_in_a_category_and_subcategory(reported, config):
    for rule, path, category, subcategory in reported[config]:
        assert category and subcategory, f"{rule}: {path} has category {category!r}, subcategory {subcategory!r}"


def test_no_file_name_comes_from_two_rules_in_any_configs(reported):
    """A config enabling several papers at once must not get two figures of one name either."""
    rules_by_name = defaultdict(set)
    for rows in reported.values():
        for rule, path, _, _ in rows:
            rules_by_name[Path(path).name].add(rule)
    assert {name: rules for name, rules in rules_by_name.items() if len(rules) > 1} == {}


def test_heatmaps_are_grouped_by_comparison(reported):
    subcategory = {Path(path).name: sub for rule, path, _, sub in reported["config.yaml"] if rule == "heatmap"}
    assert subcategory["resnet8x1-s0-e20__resnet8x1-s0-e20.png"] == "Self-similarity"
    assert subcategory["resnet8x1-s0-e20__resnet8x1-s1-e20.png"] == "Across seeds"
    assert subcategory["resnet20x1-s0-e20__resnet8x2-s0-e20.png"] == "Between models"
    assert reported["config.yaml"], "the default config reports figures"
