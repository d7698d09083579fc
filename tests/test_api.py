"""The notebook API: CKA of two torch models on arrays or a DataLoader."""

import numpy as np
import pytest
import torch

from layersim import compare_models
from layersim.errors import LayersimError
from layersim.models.torch import CifarResNet, LayerRecorder, layer_names
from reference import minibatch_cka


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return CifarResNet(8, 1, 10, 1).eval(), CifarResNet(8, 2, 10, 1).eval()


def test_arrays_match_reference(models):
    a, b = models
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    cka = compare_models(a, b, images, batch_size=16, passes=2, dtype=np.float64, progress=False)
    assert cka.dims == ("layer_a", "layer_b") and list(cka["layer_a"].values) == layer_names(a)
    # reference: the same schedule restated, activations recorded independently
    layers = ["stem.conv", "stage2.block1.relu2", "logits"]
    batches_a, batches_b = [], []
    for r in (1, 2):
        perm = np.random.default_rng(r).permutation(40)
        for k in range(40 // 16):
            x = images[np.sort(perm[k * 16 : (k + 1) * 16])]
            with LayerRecorder(a, layers) as ra, LayerRecorder(b, layers) as rb, torch.no_grad():
                a(x), b(x)
                batches_a.append([t.numpy() for t in ra.take().values()])
                batches_b.append([t.numpy() for t in rb.take().values()])
    np.testing.assert_allclose(cka.sel(layer_a=layers, layer_b=layers).values, minibatch_cka(batches_a, batches_b), atol=1e-9)


def test_dataloader_and_self_similarity(models):
    a, _ = models
    data = torch.utils.data.TensorDataset(torch.rand(48, 1, 8, 8), torch.zeros(48, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=False)
    cka = compare_models(a, a, loader, passes=1, progress=False)
    assert cka.attrs["n_batches"] == 3
    np.testing.assert_allclose(np.diag(cka.values), 1.0, atol=1e-5)


def test_named_layers_only(models):
    a, b = models
    cka = compare_models(a, b, torch.rand(20, 1, 8, 8), layers_a=["pool"], layers_b=["pool", "logits"], batch_size=10, passes=1, progress=False)
    assert cka.shape == (1, 2)


def test_restores_each_modules_mode(models):
    a, b = models
    a.train()
    a.stem.bn.eval()  # a mixed state, as during fine-tuning with frozen batch norms
    try:
        compare_models(a, b, torch.rand(16, 1, 8, 8), batch_size=8, passes=1, progress=False)
        assert a.training and a.stage1.training and not a.stem.bn.training
        assert not b.training
    finally:
        a.eval()


def test_short_last_dataloader_batch_is_skipped_with_a_warning(models):
    a, b = models
    data = torch.utils.data.TensorDataset(torch.rand(34, 1, 8, 8))
    loader = torch.utils.data.DataLoader(data, batch_size=16)  # batches of 16, 16 and 2
    with pytest.warns(UserWarning, match="skipped 2 samples"):
        cka = compare_models(a, b, loader, passes=1, progress=False)
    assert cka.attrs["n_batches"] == 2 and np.isfinite(cka.values).all()


def test_progress_bar_has_a_total(models, capsys):
    a, _ = models
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(32, 1, 8, 8)), batch_size=16)
    compare_models(a, a, loader, passes=3, progress=True)
    assert "6/6" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, word", [({"batch_size": 0}, "batch_size"), ({"batch_size": 2}, "batch_size"), ({"passes": 0}, "passes"), ({"passes": 1.5}, "passes")])
def test_bad_schedule_is_one_clear_error(models, kwargs, word):
    a, b = models
    with pytest.raises(LayersimError, match=word):
        compare_models(a, b, torch.rand(16, 1, 8, 8), progress=False, **{"batch_size": 8, "passes": 1, **kwargs})


def test_uint8_and_float64_images(models):
    a, b = models
    pixels = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    expected = compare_models(a, b, pixels.float() / 255, batch_size=8, passes=1, progress=False, dtype=np.float64)
    for images in (pixels, pixels.numpy(), (pixels.double() / 255).numpy()):
        cka = compare_models(a, b, images, batch_size=8, passes=1, progress=False, dtype=np.float64)
        np.testing.assert_allclose(cka.values, expected.values, atol=1e-6)
    with pytest.raises(LayersimError, match="dtype torch.int64"):
        compare_models(a, b, pixels.long(), batch_size=8, passes=1, progress=False)


def test_device_argument_and_names(models):
    a, b = models
    images = torch.rand(16, 1, 8, 8)
    cka = compare_models(a, b, images, batch_size=8, passes=1, progress=False, device="cpu", names=("deep", "wide"))
    assert cka.attrs["model_a"] == "deep" and cka.attrs["model_b"] == "wide"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_moves_models_there_and_back(models):
    a, b = models
    images = torch.rand(32, 1, 8, 8)
    on_cpu = compare_models(a, b, images, batch_size=16, passes=1, progress=False, dtype=np.float64)
    on_gpu = compare_models(a, b, images, batch_size=16, passes=1, progress=False, dtype=np.float64, device="cuda")
    assert next(a.parameters()).device.type == "cpu" and next(b.parameters()).device.type == "cpu"
    np.testing.assert_allclose(on_gpu.values, on_cpu.values, atol=1e-5)


OPTIONAL = ("snakemake", "tensorflow", "keras", "minigrid", "gymnasium")
CORE_USE = """
import sys
for name in {optional}:  # as if only `pip install .` had run: importing them fails
    sys.modules[name] = None
import layersim, layersim.api, layersim.plots, layersim.store, layersim.engine, layersim.cli, layersim.metrics
import torch
from layersim import compare_models
from layersim.models.torch import CifarResNet
from layersim.plots import heatmap_figure
cka = compare_models(CifarResNet(8, 1, 10, 1), CifarResNet(8, 2, 10, 1), torch.rand(16, 1, 8, 8), batch_size=8, passes=1, progress=False)
heatmap_figure(cka, sys.argv[1])
assert layersim.cli.main(["targets"]) == 1  # one clear message instead of an ImportError
print(sorted(m for m, module in sys.modules.items() if module is not None and m.split(".")[0] in {optional}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch: 5–15 s
def test_core_install_needs_no_workflow_keras_or_rl_package(repo, tmp_path):
    """The library, notebook API, plots and CLI import and run without the optional extras."""
    import subprocess
    import sys

    code = CORE_USE.format(optional=repr(set(OPTIONAL)))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.png")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "pip install 'layersim[workflow]'" in done.stderr and (tmp_path / "h.png").stat().st_size > 0


def test_pyproject_core_and_extras(repo):
    import importlib
    import tomllib

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in OPTIONAL + ("tensorflow-cpu",):
        assert name not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("snakemake>") for d in extras["workflow"])
    assert any(d.startswith("tensorflow-cpu") for d in extras["keras"])
    assert {d.split(">")[0].split("=")[0] for d in extras["rl"]} >= {"minigrid", "gymnasium"}
    assert any(d.startswith("pytest") for d in extras["test"])
    module, function = project["scripts"]["layersim"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
