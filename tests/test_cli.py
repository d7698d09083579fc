"""The ``layersim`` command: help, inspect, heatmap, targets; one-line errors with exit status 1."""

import json
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from layersim.cli import main
from layersim.plots import heatmap_figure
from layersim.store import read_similarity
from small_results import PAIR, write_small_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return write_small_results(tmp_path_factory.mktemp("cli"))


def _store(results, name="resnet8x2-s0-e20"):
    return results / "activations" / f"{name}.zarr"


def _result(results):
    return results / "similarity" / "cka" / f"{PAIR[0]}__{PAIR[1]}.zarr"


def _one_line_error(capsys, code, command):
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"layersim {command}: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_module_entry_point_and_version(repo):
    done = subprocess.run([sys.executable, "-m", "layersim.cli", "--version"], capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0 and done.stdout.strip() == "layersim 0.1.0"


@pytest.mark.parametrize("argv, words", [([], ["inspect", "heatmap", "targets"]), (["inspect"], ["STORE", "--verify", "provenance"]), (["heatmap"], ["RESULT", "OUT", "--max-labels"]), (["targets"], ["--configfile", "not merged"])])
def test_help(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "COMMAND" in capsys.readouterr().err


def test_inspect_store(results, capsys):
    assert main(["inspect", str(_store(results, "resnet20x1-s0-e20")), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "128 samples, 59 layers" in out
    assert "model: resnet20x1" in out and "dataset: digits" in out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["stage3.block3.relu2"])
    assert "(64, 2, 2)" in line and "float32" in line and "channel, height, width" in line
    assert "verified" in out


def test_inspect_similarity_result(results, capsys):
    assert main(["inspect", str(_result(results))]) == 0
    out = capsys.readouterr().out
    assert "similarity result, 59 × 23 layers" in out and "model_a: resnet20x1-s0-e20" in out


def test_inspect_gram_store_and_verify_its_checksums(results, tmp_path, capsys):
    from layersim.engine import write_gram_store

    grams = write_gram_store(_store(results), tmp_path / "g.zarr", batch_size=32, passes=2, threads=1, gram_kernel="syrk", progress=False)
    assert main(["inspect", str(grams), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "Gram store, 8 minibatches of 32 samples, 23 layers, float32" in out and "gram_kernel: syrk" in out and "verified" in out
    chunk = grams / "grams" / "c.5.0.0"
    chunk.write_bytes(chunk.read_bytes()[::-1])
    err = _one_line_error(capsys, main(["inspect", str(grams), "--verify"]), "inspect")
    assert "grams/c.5.0.0 (the Grams of minibatch 6) does not hold the bytes written" in err


def test_inspect_missing_store(tmp_path, capsys):
    err = _one_line_error(capsys, main(["inspect", str(tmp_path / "nothing.zarr")]), "inspect")
    assert "does not exist" in err


@pytest.mark.parametrize("damage", ["group metadata", "incomplete", "layer metadata", "shard emptied"])
def test_inspect_damaged_store(results, tmp_path, capsys, damage):
    store = shutil.copytree(_store(results), tmp_path / "copy.zarr")
    argv = ["inspect", str(store)]
    if damage == "group metadata":
        (store / "zarr.json").write_text("{not json")
    elif damage == "incomplete":
        meta = json.loads((store / "zarr.json").read_text())
        meta["attributes"]["complete"] = False
        (store / "zarr.json").write_text(json.dumps(meta))
    elif damage == "layer metadata":
        (store / "stem.conv" / "zarr.json").write_text("")
    else:
        shard = sorted(p for p in (store / "pool").iterdir() if p.name.startswith("c"))[0]
        shard.write_bytes(b"")
        argv.append("--verify")
    err = _one_line_error(capsys, main(argv), "inspect")
    assert str(store) in err


def test_heatmap_command_draws_the_pipelines_figure(results, tmp_path, capsys):
    assert main(["heatmap", str(_result(results)), str(tmp_path / "cli.png")]) == 0
    heatmap_figure(read_similarity(_result(results)), tmp_path / "rule.png")  # what the heatmap rule runs
    np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "cli.png"), matplotlib.image.imread(tmp_path / "rule.png"))
    err = _one_line_error(capsys, main(["heatmap", str(tmp_path / "none.zarr"), str(tmp_path / "x.png")]), "heatmap")
    assert "does not exist" in err and not (tmp_path / "x.png").exists()
    damaged = shutil.copytree(_result(results), tmp_path / "damaged.zarr")
    (damaged / "cka" / "c" / "0" / "0").write_bytes(b"not a compressed chunk")
    err = _one_line_error(capsys, main(["heatmap", str(damaged), str(tmp_path / "y.png")]), "heatmap")
    assert str(damaged) in err and not (tmp_path / "y.png").exists()


def test_targets_without_snakemake(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "snakemake" else real(name, *a))
    err = _one_line_error(capsys, main(["targets"]), "targets")
    assert "pip install 'layersim[workflow]'" in err


def test_targets_outside_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, main(["targets"]), "targets")
    assert "no workflow at Snakefile" in err


@pytest.mark.slow
def test_targets_lists_a_configs_outputs(repo, tmp_path, capsys):
    config = tmp_path / "two.yaml"
    config.write_text((repo / "config" / "config.yaml").read_text())
    assert main(["targets", "--snakefile", str(repo / "Snakefile"), "--configfile", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].endswith("to (re)build") and lines[-1].split()[0] == str(len(lines) - 1)
    outputs = {line.split()[-1] for line in lines[:-1]}
    assert "results/default/figures/heatmaps/resnet20x1-s0-e20__resnet8x2-s0-e20.png" in outputs
    assert "results/default/models/resnet8x1/s0/e20.pt" in outputs


def test_inspect_into_a_pipe_closed_early_is_not_called_damage(results):
    # `layersim inspect store | head -1`: the reader stops; the store is not "damaged"
    command = f"{sys.executable} -m layersim.cli inspect {_store(results, 'resnet20x1-s0-e20')} | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.stdout.startswith(str(_store(results, "resnet20x1-s0-e20")))
    assert "damaged" not in done.stderr and "Traceback" not in done.stderr and done.stderr == ""
