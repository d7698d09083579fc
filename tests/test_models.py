"""CIFAR ResNets: layer names, determinism of training, checkpoints."""

import json

import numpy as np
import pytest
import torch

from layersim.data import Dataset, Split
from layersim.models.torch import CifarResNet, LayerRecorder, ModelConfigError, layer_names
from layersim.train import load_torch_checkpoint, train_torch


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_layer_names_are_stable_and_complete(depth):
    n = (depth - 2) // 6
    names = layer_names(CifarResNet(depth, 2, 10, 3))
    assert len(names) == 3 + 18 * n + 2
    assert names[:3] == ["stem.conv", "stem.bn", "stem.relu"]
    assert names[-2:] == ["pool", "logits"]
    assert f"stage3.block{n}.relu2" in names and "stage2.block1.relu1" in names
    assert not any("shortcut" in name for name in names)
    assert names == layer_names(CifarResNet(depth, 2, 10, 3))


def test_recorder_gives_each_layer_once_in_order():
    model = CifarResNet(8, 1, 10, 1).eval()
    names = layer_names(model)
    with LayerRecorder(model, names) as rec:
        logits = model(torch.rand(3, 1, 8, 8))
        outputs = rec.take()
    assert list(outputs) == names
    torch.testing.assert_close(outputs["logits"], logits)
    assert outputs["stage2.block1.conv1"].shape == (3, 32, 4, 4)


@pytest.mark.parametrize("depth,width", [(9, 1), (4, 1), (8, 0)])
def test_bad_architecture_is_refused(depth, width):
    with pytest.raises(ModelConfigError, match="6n\\+2|positive"):
        CifarResNet(depth, width)


def tiny_dataset(n=48):
    rng = np.random.default_rng(0)
    images = rng.random((n, 1, 8, 8), dtype=np.float32)
    labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    split = Split(images, labels, np.arange(n))
    return Dataset("tiny", split, split, num_classes=2)


def test_training_is_deterministic_and_checkpoints_load(tmp_path):
    ds = tiny_dataset()
    cfg = {"epochs": 2, "batch_size": 16}
    runs = []
    for name in ("a", "b"):
        train_torch({"depth": 8, "width": 1}, cfg, ds, seed=7, checkpoint=tmp_path / f"{name}.pt", history=tmp_path / f"{name}.json", threads=1, progress=False)
        runs.append(torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"])
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
    train_torch({"depth": 8, "width": 1}, cfg, ds, seed=8, checkpoint=tmp_path / "c.pt", history=tmp_path / "c.json", threads=1, progress=False)
    other = torch.load(tmp_path / "c.pt", weights_only=True)["state_dict"]
    assert not torch.equal(other["stem.conv.weight"], runs[0]["stem.conv.weight"])
    history = json.loads((tmp_path / "a.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert 0.0 <= history["eval_accuracy"] <= 1.0 and history["epochs"][0]["loss"] > 0
    model, state = load_torch_checkpoint(tmp_path / "a.pt")
    assert state["epoch"] == 2 and state["seed"] == 7
    assert not list(tmp_path.glob("*.partial"))
