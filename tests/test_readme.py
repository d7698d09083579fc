"""README.md cannot go stale: every runnable code block in it is run here.

A block's language decides how: ``python`` blocks are executed in this process, ``bash``/``sh``
blocks by bash (``set -euo pipefail``) with the worktree's ``layersim`` command and ``python``
first on the PATH, ``yaml`` blocks marked ``config`` are validated against the config schema.
An HTML comment on the line before a block says more:

* ``<!-- readme-test: cwd=results -->`` runs it in a folder holding a small ``results/default/``
  (two real activation stores and their CKA result, :mod:`small_results`);
  ``cwd=repo`` in the repository; default: an empty temporary folder;
* ``slow`` marks it ``@pytest.mark.slow``;
* ``skip (reason)`` leaves it out; only installs, the full run and the test commands may be.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RUNNABLE = {"python": "python", "bash": "shell", "sh": "shell", "shell": "shell", "yaml": "config"}
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
# what a skipped block may contain: installs, the full default run, the test commands
SKIPPABLE = re.compile(r"^\s*(#.*)?$|pip install|scripts/setup\.sh|snakemake --cores|-m pytest")


def readme_blocks(text: str) -> list[dict]:
    """The fenced code blocks of a Markdown text: language, code, first line, marker words."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = lines[i - 1] if i > 0 else ""
        marker = MARKER.fullmatch(previous.strip())
        blocks.append({"language": fence.group(1), "code": "\n".join(lines[i + 1 : end]) + "\n", "line": i + 2, "marker": marker.group(1) if marker else ""})
        i = end + 1
    return blocks


BLOCKS = readme_blocks((REPO / "README.md").read_text())


def _runnable(block) -> bool:
    kind = RUNNABLE.get(block["language"])
    return kind in ("python", "shell") or (kind == "config" and "config" in block["marker"].split())


def _params():
    params = []
    for block in BLOCKS:
        if not _runnable(block) or block["marker"].startswith("skip"):
            continue
        marks = [pytest.mark.slow] if "slow" in block["marker"].split() else []
        params.append(pytest.param(block, id=f"README.md:{block['line']}-{block['language']}", marks=marks))
    return params


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    from small_results import write_small_results

    root = tmp_path_factory.mktemp("readme-results")
    write_small_results(root)
    return root


@pytest.fixture
def shim_path(tmp_path_factory):
    """A PATH whose first folder holds ``layersim`` and ``python`` running this worktree's code."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, command in (("layersim", f'exec "{sys.executable}" -m layersim.cli "$@"'), ("python", f'exec "{sys.executable}" "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{command}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _cwd(block, request, tmp_path) -> Path:
    words = dict(w.split("=", 1) for w in block["marker"].split() if "=" in w)
    where = words.get("cwd")
    if where == "results":
        return request.getfixturevalue("results_dir")
    if where == "repo":
        return REPO
    assert where is None, f"README.md:{block['line']}: unknown cwd={where}"
    return tmp_path


def test_blocks_are_found():
    languages = [b["language"] for b in BLOCKS if _runnable(b) and not b["marker"].startswith("skip")]
    assert languages.count("python") >= 3 and languages.count("bash") >= 2 and "yaml" in languages


@pytest.mark.parametrize("block", [b for b in BLOCKS if b["marker"].startswith("skip")], ids=lambda b: f"README.md:{b['line']}")
def test_skipped_blocks_say_why_and_hold_only_long_commands(block):
    assert re.fullmatch(r"skip \(.{10,}\)", block["marker"]), "a skipped block needs a reason: <!-- readme-test: skip (why) -->"
    for line in block["code"].splitlines():
        assert SKIPPABLE.search(line), f"README.md:{block['line']}: {line!r} is skipped but is not an install, the full run or the test command"


@pytest.mark.parametrize("block", _params())
def test_readme_block(block, request, tmp_path, monkeypatch):
    cwd = _cwd(block, request, tmp_path)
    kind = RUNNABLE[block["language"]]
    where = f"README.md:{block['line']}"
    if kind == "python":
        import matplotlib.pyplot as plt

        monkeypatch.chdir(cwd)
        try:
            exec(compile(block["code"], where, "exec"), {"__name__": "__readme__"})
        finally:
            plt.close("all")
    elif kind == "shell":
        shims = request.getfixturevalue("shim_path")
        env = {**__import__("os").environ, "PATH": f"{shims}:{__import__('os').environ['PATH']}", "PYTHONPATH": f"{REPO / 'src'}:{REPO / 'tests'}", "MPLBACKEND": "Agg"}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{where} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    else:  # a config: valid against the schema, as the workflow checks it
        from snakemake.utils import validate

        validate(yaml.safe_load(block["code"]), str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)


def test_readme_block_failure_is_caught(tmp_path):
    """A broken snippet fails: the runner above raises on the README's xarray snippet as it was."""
    from small_results import write_small_results

    write_small_results(tmp_path, n_samples=32)
    old = 'import xarray as xr\ncka = xr.open_zarr("results/default/similarity/cka/resnet20x1-s0-e20__resnet8x2-s0-e20.zarr")["cka"]\ncka.sel(layer_a="stage3.block3.relu2", layer_b="logits").item()\n'
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(NotImplementedError, match="item"):
            exec(compile(old, "old README", "exec"), {})
    finally:
        os.chdir(cwd)


def test_license_is_apache_2_as_pyproject_says():
    import tomllib

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    assert "9. Accepting Warranty or Additional Liability." in text
    assert re.search(r"^   Copyright \d{4} \S.*$", text, re.M) and "[yyyy]" not in text
