"""CIFAR ResNets: layer names, determinism of training, checkpoints."""

import json

import numpy as np
import pytest
import torch

from layersim.data import Dataset, Split
from layersim.models.torch import CifarResNet, LayerRecorder, ModelConfigError, layer_names
from layersim.train.torch import load_torch_checkpoint, train_torch


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
    assert not list(tmp_path.glob("*partial*"))


# --- The thesis' CIFAR zoo (VGG, four-stage ResNet, MobileNet v1/v2) ----------------------------

from layersim.models.torch import TORCH_FAMILIES, build_torch_model  # noqa: E402

ZOO = {
    "vgg11": {"family": "vgg", "depth": 11},
    "vgg13": {"family": "vgg", "depth": 13},
    "vgg16": {"family": "vgg", "depth": 16},
    "resnet18": {"family": "resnet4stage", "depth": 18},
    "resnet34": {"family": "resnet4stage", "depth": 34},
    "mobilenet": {"family": "mobilenet", "depth": 28},
    "mobilenetv2": {"family": "mobilenetv2", "depth": 53},
}


def _vgg_conv_weights(config):
    """3×3 convolution weights of a VGG configuration (channel list, 'M' = max pool)."""
    total, c_in = 0, 3
    for c in config:
        if c != "M":
            total, c_in = total + 9 * c_in * c, c
    return total


def _expected_parameters(name):
    """Parameter counts at width 1 with 100 classes, from the published architectures.

    VGG: torchvision's ``vgg11/13/16().features`` hold 9,220,480 / 9,404,992 / 14,714,688
    parameters, convolution biases included (2,752 / 2,944 / 4,224 of them); ours drop those
    biases (a batch norm follows) and add the norms (2 per channel) and a 512→100 linear layer.
    ResNet-18/34: torchvision's 11,689,512 / 21,797,672 (ImageNet), minus the 7×7 stem
    (3·64·49) and the 512→1000 classifier, plus a 3×3 stem (3·64·9) and a 512→100 classifier.
    MobileNetV2: torchvision's 3,504,872, minus the 1280→1000 classifier, plus 1280→100.
    MobileNet v1: Keras' MobileNet(alpha=1) has 4,231,976 trainable parameters with a
    1×1-convolution classifier 1024→1000 (with bias); we replace it by 1024→100.
    """
    vgg = {
        "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    }
    published_features = {"vgg11": 9_220_480, "vgg13": 9_404_992, "vgg16": 14_714_688}
    head = lambda c: c * 100 + 100  # noqa: E731
    if name in vgg:
        channels = [c for c in vgg[name] if c != "M"]
        assert published_features[name] - sum(channels) == _vgg_conv_weights(vgg[name])  # the bias count checks out
        return published_features[name] - sum(channels) + 2 * sum(channels) + head(512)
    stem_change = 3 * 64 * 9 - 3 * 64 * 49
    return {
        "resnet18": 11_689_512 + stem_change - (512 * 1000 + 1000) + head(512),
        "resnet34": 21_797_672 + stem_change - (512 * 1000 + 1000) + head(512),
        "mobilenetv2": 3_504_872 - (1280 * 1000 + 1000) + head(1280),
        "mobilenet": 4_231_976 - (1024 * 1000 + 1000) + head(1024),
    }[name]


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_parameter_counts_match_the_standard_architectures(name):
    model = build_torch_model(ZOO[name], num_classes=100, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == _expected_parameters(name)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_forward_shapes_and_layer_names(name):
    arch = {**ZOO[name], "width": 0.125}
    model = build_torch_model(arch, num_classes=10, in_channels=1).eval()
    names = layer_names(model)
    assert len(names) == len(set(names)) and names[-2:] == ["pool", "logits"]
    assert not any("shortcut" in n or "maxpool" in n for n in names)
    with LayerRecorder(model, names) as rec:
        logits = model(torch.rand(3, 1, 32, 32))
        outputs = rec.take()
    assert list(outputs) == names and logits.shape == (3, 10)
    torch.testing.assert_close(outputs["logits"], logits)
    pooled = {"vgg": 512, "resnet4stage": 512, "mobilenet": 1024, "mobilenetv2": 1280}[arch["family"]]
    assert outputs["pool"].shape == (3, round(pooled * 0.125))
    assert names == layer_names(build_torch_model(arch, num_classes=10, in_channels=1))


def test_zoo_layer_counts():
    counts = {name: len(layer_names(build_torch_model(arch, num_classes=10, in_channels=3))) for name, arch in ZOO.items()}
    # 3 layers (conv, bn, relu) per convolution, + pool + logits; ResNets: + the stem's 3.
    assert counts["vgg11"] == 3 * 8 + 2 and counts["vgg13"] == 3 * 10 + 2 and counts["vgg16"] == 3 * 13 + 2
    assert counts["resnet18"] == 3 + 6 * 8 + 2 and counts["resnet34"] == 3 + 6 * 16 + 2
    assert counts["mobilenet"] == 3 + 6 * 13 + 2
    # MobileNetV2: stem 3; block 1 (t = 1) 5; 16 expanded blocks 8 each; 10 residual blocks + out; head 3
    assert counts["mobilenetv2"] == 3 + 5 + 16 * 8 + 10 + 3 + 2


def test_mobilenetv2_residual_output_is_the_sum():
    model = build_torch_model({"family": "mobilenetv2", "depth": 53, "width": 0.25}, num_classes=10, in_channels=3).eval()
    block = model.block3  # 24 → 24 channels, stride 1: a residual block
    x = torch.rand(2, 6, 8, 8)
    with LayerRecorder(model, ["block3.project_bn", "block3.out"]) as rec:
        y = block(x)
        out = rec.take()
    torch.testing.assert_close(out["block3.out"], x + out["block3.project_bn"])
    torch.testing.assert_close(y, out["block3.out"])
    assert not hasattr(model.block2, "out")  # 16 → 24 channels: no residual


@pytest.mark.parametrize("name,side", [("vgg11", 32), ("mobilenet", 16), ("resnet18", 8), ("mobilenetv2", 8)])
def test_zoo_refuses_too_small_images_naming_the_minimum(name, side):
    model = build_torch_model({**ZOO[name], "width": 0.125}, num_classes=10, in_channels=1).eval()
    model(torch.rand(1, 1, side, side))  # the minimum itself works
    with pytest.raises(ModelConfigError, match=f"side ≥ {side}.*image_size to {side}"):
        model(torch.rand(1, 1, side // 2, side // 2))


@pytest.mark.parametrize(
    "arch,match",
    [
        ({"family": "vgg", "depth": 19}, "11, 13 or 16"),
        ({"family": "resnet4stage", "depth": 50}, "18 or 34"),
        ({"family": "mobilenet", "depth": 30}, "depth must be 28"),
        ({"family": "mobilenetv2", "depth": 28}, "depth must be 53"),
        ({"family": "vgg", "depth": 11, "width": 0}, "positive number"),
        ({"family": "resnet", "depth": 8, "width": 0.5}, "positive integer"),
        ({"family": "alexnet", "depth": 8}, "unknown torch model family"),
    ],
)
def test_zoo_bad_architecture_is_refused(arch, match):
    with pytest.raises(ModelConfigError, match=match):
        build_torch_model(arch, num_classes=10, in_channels=3)


def test_schema_lists_every_torch_family():
    import yaml

    from workflow_runner import REPO

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    families = schema["properties"]["models"]["additionalProperties"]["properties"]["family"]["enum"]
    assert set(TORCH_FAMILIES) <= set(families)
