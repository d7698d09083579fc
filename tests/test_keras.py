"""Keras models, strategy selection, training and extraction (tiny models, CPU)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cifar_fixtures import make_cifar_archive
from layersim.models.keras import ModelConfigError, cifar_resnet, seed_resnet

# Keras converts tensors with np.array(x), which numpy 2 flags once per call.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


# ----------------------------------------------------------------------------- no TensorFlow needed


def test_modules_import_without_tensorflow_or_torch():
    code = (
        "import sys, layersim.data.cifar, layersim.models.keras, layersim.train.keras, "
        "layersim.extract.keras; print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("depth", [0, 7, 9, 21, 32.0])
def test_cifar_resnet_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ModelConfigError, match=r"depth must be 6n\+2"):
        cifar_resnet(depth)


def test_seed_resnet_rejects_bad_depth_downloads_and_missing_files(tmp_path):
    with pytest.raises(ModelConfigError, match=r"one of \(50, 101, 152\)"):
        seed_resnet(34)
    with pytest.raises(ModelConfigError, match="would download"):
        seed_resnet(50, weights="imagenet")
    with pytest.raises(ModelConfigError, match=r"weights file .*nope\.h5 does not exist"):
        seed_resnet(50, weights=tmp_path / "nope.h5")


# ----------------------------------------------------------------------------- TensorFlow tests


@pytest.fixture
def tf():
    tf = pytest.importorskip("tensorflow")
    from layersim.models.keras import import_keras

    keras = import_keras()
    yield tf
    keras.mixed_precision.set_global_policy("float32")
    tf.config.optimizer.set_jit(False)


@pytest.mark.keras
@pytest.mark.parametrize("depth,count,torch_count", [(8, 30, 23), (20, 72, 59)])
def test_cifar_resnet_layer_names_are_stable(tf, depth, count, torch_count):
    from layersim.models.keras import import_keras, layer_names
    from layersim.models.torch import CifarResNet
    from layersim.models.torch import layer_names as torch_layer_names

    keras = import_keras()
    first = layer_names(cifar_resnet(depth, 1, 10, (8, 8, 1)))
    keras.layers.Dense(3)  # auto-named layers in between must not shift the names
    cifar_resnet(8, 2, 10, (8, 8, 1))
    second = layer_names(cifar_resnet(depth, 1, 10, (8, 8, 1)))
    assert first == second and len(first) == count == 21 * ((depth - 2) // 6) + 9
    assert first[:3] == ["stem.conv", "stem.bn", "stem.relu"] and first[-2:] == ["pool", "logits"]
    assert "stage2.block1.shortcut.conv" in first and "stage1.block1.shortcut.conv" not in first
    torch_names = torch_layer_names(CifarResNet(depth, 1, 10, 1))
    assert layer_names(cifar_resnet(depth, 1, 10, (8, 8, 1)), torch_equivalent=True) == torch_names
    assert len(torch_names) == torch_count


@pytest.mark.keras
def test_cifar_resnet_architecture(tf):
    model = cifar_resnet(14, 2, num_classes=7, input_shape=(8, 8), in_channels=1)
    by = {layer.name: layer for layer in model.layers}
    assert tuple(by["stem.conv"].output.shape) == (None, 8, 8, 32)
    assert tuple(by["stage2.block1.conv1"].output.shape) == (None, 4, 4, 64)
    assert by["stage2.block1.conv1"].strides == (2, 2) and by["stage2.block2.conv1"].strides == (1, 1)
    assert by["stage3.block1.shortcut.conv"].kernel_size == (1, 1)
    assert tuple(by["stage3.block2.relu2"].output.shape) == (None, 2, 2, 128)
    assert tuple(by["logits"].output.shape) == (None, 7)
    assert by["logits"].activation.__name__ == "linear"
    assert not by["stem.conv"].use_bias
    with pytest.raises(ModelConfigError, match="has 1 channels but in_channels=3"):
        cifar_resnet(8, input_shape=(8, 8, 1), in_channels=3)


@pytest.mark.slow
@pytest.mark.keras
def test_seed_resnet50_layers_and_weights_files(tf, tmp_path):
    from layersim.models.keras import layer_names

    model = seed_resnet(50, num_classes=10)
    names = layer_names(model)
    assert len(names) == 177 and names[:2] == ["conv1_pad", "conv1_conv"]
    assert names[-4:] == ["conv5_block3_out", "avg_pool", "logits", "predictions"]
    assert model.layers[-2].activation.__name__ == "linear"
    assert layer_names(seed_resnet(50, num_classes=10)) == names
    # a whole-model weights file round-trips
    model.layers[-2].kernel.assign(np.full(model.layers[-2].kernel.shape, 0.25, np.float32))
    path = tmp_path / "r50.weights.h5"
    model.save_weights(path)
    loaded = seed_resnet(50, num_classes=10, weights=path)
    np.testing.assert_array_equal(loaded.layers[-2].kernel.numpy(), 0.25)
    # a weights file saved for another architecture is refused with a clear message
    other = tmp_path / "resnet8.weights.h5"
    cifar_resnet(8, input_shape=(32, 32, 3)).save_weights(other)
    with pytest.raises(ModelConfigError, match=r"resnet8\.weights\.h5 does not fit ResNet50 .*different architecture"):
        seed_resnet(50, num_classes=10, weights=other)
    with pytest.raises(ModelConfigError, match=r"does not fit ResNet50 .*100 classes"):
        seed_resnet(50, num_classes=100, weights=path)


class _FakeResolver:
    def master(self):
        return "grpc://10.0.0.2:8470"


class _FakeStrategy:
    def __init__(self, *args, **kwargs):
        self.args = args
        self.num_replicas_in_sync = 8


@pytest.mark.keras
def test_strategy_tpu_uses_bfloat16(tf, monkeypatch, caplog):
    from layersim.train.keras import select_strategy
    from layersim.models.keras import import_keras

    calls = []
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", _FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.append("connect"))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append("init"))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", _FakeStrategy)
    with caplog.at_level(logging.INFO, logger="layersim.train.keras"):
        choice = select_strategy(mixed_precision="float16", xla=True)
    assert choice.name == "TPUStrategy" and isinstance(choice.strategy, _FakeStrategy)
    assert isinstance(choice.strategy.args[0], _FakeResolver) and calls == ["connect", "init"]
    assert choice.replicas == 8 and choice.policy == "mixed_bfloat16" and choice.xla
    assert import_keras().mixed_precision.global_policy().name == "mixed_bfloat16"
    assert tf.config.optimizer.get_jit() in (True, "autoclustering")
    assert "TPU found by the cluster resolver (grpc://10.0.0.2:8470): using TPUStrategy" in caplog.text


def _fake_gpus(tf, monkeypatch, n):
    real = tf.config.list_physical_devices
    fake = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(n)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda t=None: fake if t == "GPU" else real(t))


@pytest.mark.keras
def test_strategy_several_gpus_mirrored(tf, monkeypatch, caplog):
    from layersim.train.keras import select_strategy
    from layersim.models.keras import import_keras

    _fake_gpus(tf, monkeypatch, 4)
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", _FakeStrategy)
    with caplog.at_level(logging.INFO, logger="layersim.train.keras"):
        choice = select_strategy(mixed_precision="auto", xla=False)
    assert choice.name == "MirroredStrategy" and isinstance(choice.strategy, _FakeStrategy)
    assert choice.policy == "mixed_float16" == import_keras().mixed_precision.global_policy().name
    assert "4 GPUs found: using MirroredStrategy" in caplog.text


@pytest.mark.keras
def test_strategy_one_gpu(tf, monkeypatch):
    from layersim.train.keras import select_strategy

    _fake_gpus(tf, monkeypatch, 1)
    choice = select_strategy(mixed_precision="bfloat16")
    assert choice.name == "OneDeviceStrategy" and isinstance(choice.strategy, tf.distribute.OneDeviceStrategy)
    assert "gpu:0" in choice.strategy.extended.worker_devices[0].lower()
    assert choice.policy == "mixed_bfloat16"


@pytest.mark.keras
def test_strategy_cpu_default(tf, monkeypatch, caplog):
    from layersim.train.keras import TrainConfigError, select_strategy
    from layersim.models.keras import import_keras

    _fake_gpus(tf, monkeypatch, 0)
    keras = import_keras()
    keras.mixed_precision.set_global_policy("mixed_float16")  # a leftover policy is reset
    with caplog.at_level(logging.INFO, logger="layersim.train.keras"):
        choice = select_strategy(mixed_precision="auto")
    assert choice.name == "default" and choice.strategy is tf.distribute.get_strategy()
    assert choice.policy == "float32" == keras.mixed_precision.global_policy().name
    assert "no TPU or GPU found: using the default (CPU) strategy" in caplog.text
    assert select_strategy(mixed_precision="float16").policy == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    with pytest.raises(TrainConfigError, match="mixed_precision must be"):
        select_strategy(mixed_precision="fp8")


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    from layersim.data.cifar import load_cifar

    root = tmp_path_factory.mktemp("cifar")
    _, sha = make_cifar_archive(root, "cifar10", "binary", n_train=48, n_test=12, seed=1)
    return load_cifar(root, variant="cifar10", sha256=sha)


def _weights(path):
    from layersim.models.keras import import_keras

    return [w.copy() for w in import_keras().models.load_model(path, compile=False).get_weights()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cifar):
    """Three 1-epoch trainings of ResNet-8: seeds 0, 0 and 1."""
    pytest.importorskip("tensorflow")
    from layersim.train.keras import train_keras

    root = tmp_path_factory.mktemp("trained")
    arch = {"framework": "keras", "family": "resnet", "depth": 8, "width": 1}
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        ckpt, hist = root / f"{name}.keras", root / f"{name}.json"
        runs[name] = (ckpt, train_keras(arch, {"epochs": 1, "batch_size": 16}, tiny_cifar, ckpt, hist, seed))
    return root, runs


@pytest.mark.slow
@pytest.mark.keras
def test_train_is_deterministic_and_writes_checkpoint_and_history(tf, trained):
    from layersim.train.keras import read_checkpoint_metadata

    root, runs = trained
    weights = {name: _weights(ckpt) for name, (ckpt, _) in runs.items()}
    for wa, wb in zip(weights["a"], weights["b"]):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(weights["a"], weights["c"]))
    assert runs["a"][1]["epochs"] == runs["b"][1]["epochs"]

    history = json.loads((root / "a.json").read_text())
    assert history["framework"] == "keras" and history["strategy"] == "default"
    assert [e["epoch"] for e in history["epochs"]] == [1]
    assert set(history["epochs"][0]) == {"epoch", "loss", "accuracy"}
    assert 0.0 <= history["eval_accuracy"] <= 1.0 and history["output"] == "logits"
    meta = read_checkpoint_metadata(root / "a.keras")
    assert meta["strategy"] == "default" and meta["seed"] == 0 and meta["policy"] == "float32"
    assert meta["layers"][0] == "stem.conv" and len(meta["layers"]) == 30
    assert sorted(p.name for p in root.iterdir()) == ["a.json", "a.keras", "b.json", "b.keras", "c.json", "c.keras"]


@pytest.mark.keras
def test_checkpoint_written_atomically(tf, tmp_path, monkeypatch):
    from layersim.train.keras import save_checkpoint

    model = cifar_resnet(8, input_shape=(8, 8, 1))
    target = tmp_path / "m.keras"

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, target, {"seed": 0})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.keras
def test_extract_writes_every_layer(tf, tmp_path, tiny_cifar, trained):
    pytest.importorskip("zarr")
    from layersim.extract.keras import extract_keras, load_keras_checkpoint
    from layersim.train.keras import nhwc
    from layersim.models.keras import layer_names
    from layersim.store import ActivationStore

    ckpt = trained[1]["a"][0]
    store_path = tmp_path / "m.zarr"
    extract_keras(ckpt, tiny_cifar.eval, store_path, batch_size=5, attrs={"model": "resnet8", "split": "eval"})

    model, _ = load_keras_checkpoint(ckpt)
    store = ActivationStore(store_path)
    assert store.layers == layer_names(model) and len(store.layers) == 30 and store.layers[-1] == "logits"
    assert store.attrs["framework"] == "keras" and store.attrs["seed"] == 0 and store.attrs["model"] == "resnet8"
    assert store.attrs["strategy"] == "default"
    np.testing.assert_array_equal(store.sample_id, tiny_cifar.eval.sample_id)
    np.testing.assert_array_equal(store.labels, tiny_cifar.eval.labels)
    conv = store.group["stem.conv"]
    assert conv.shape == (12, 32, 32, 16)
    assert tuple(conv.metadata.dimension_names) == ("sample", "stem.conv.height", "stem.conv.width", "stem.conv.channel")
    assert tuple(store.group["pool"].metadata.dimension_names) == ("sample", "pool.feature")
    assert tuple(store.group["logits"].metadata.dimension_names) == ("sample", "logits.class")
    # rows in sample order across batches (5 + 5 + 2), equal to a direct forward pass
    x = nhwc(tiny_cifar.eval.images)
    np.testing.assert_allclose(store.group["logits"][:], model.predict_on_batch(x), rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob("*partial*"))


@pytest.mark.slow
@pytest.mark.keras
def test_extract_hands_on_tensorflow_buffers_and_writes_with_the_given_threads(tf, tmp_path, tiny_cifar, trained, monkeypatch, assert_same_files):
    """Layer outputs reach the store as views of TensorFlow's buffers (``predict_on_batch``
    copied each one), and ``write_threads`` reaches ``write_activations``, with the writes
    overlapping the forward pass: 2 write threads write the store 1 writes, byte for byte."""
    from layersim import store as store_module
    from layersim.extract.keras import extract_keras, keras_layer_batches, load_keras_checkpoint

    ckpt = trained[1]["a"][0]
    model, _ = load_keras_checkpoint(ckpt)
    batches = list(keras_layer_batches(model, tiny_cifar.eval.images, 5))
    assert len(batches) == 3 and all(value.dtype == np.float32 and not value.flags.owndata for batch in batches for value in batch.values())

    given = []
    original = store_module.write_activations

    def spy(*args, **kwargs):
        given.append((kwargs["write_threads"], kwargs["overlap"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(store_module, "write_activations", spy)
    one = extract_keras(ckpt, tiny_cifar.eval, tmp_path / "one.zarr", batch_size=5, write_threads=1)
    two = extract_keras(ckpt, tiny_cifar.eval, tmp_path / "two.zarr", batch_size=5, write_threads=2)
    assert given == [(1, True), (2, True)]
    assert len(assert_same_files(one, two)) > 60


@pytest.mark.slow
@pytest.mark.keras
def test_extract_seed_resnet_stores_pre_softmax_logits(tf, tmp_path, tiny_cifar):
    pytest.importorskip("zarr")
    from layersim.data import Split
    from layersim.extract.keras import extract_keras
    from layersim.train.keras import save_checkpoint
    from layersim.store import ActivationStore

    ckpt = tmp_path / "r50.keras"
    save_checkpoint(seed_resnet(50, num_classes=10), ckpt, {"seed": 3})
    ev = tiny_cifar.eval
    split = Split(ev.images[:4], ev.labels[:4], ev.sample_id[:4])
    extract_keras(ckpt, split, tmp_path / "r50.zarr", batch_size=4)
    store = ActivationStore(tmp_path / "r50.zarr")
    assert len(store.layers) == 177 and store.layers[-2:] == ["logits", "predictions"]
    logits, probs = store.group["logits"][:], store.group["predictions"][:]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert store.attrs["seed"] == 3


@pytest.mark.keras
def test_extract_refuses_mismatched_input(tf, tmp_path, tiny_cifar):
    from layersim.extract.keras import ExtractError, extract_keras
    from layersim.train.keras import save_checkpoint

    ckpt = tmp_path / "m.keras"
    save_checkpoint(cifar_resnet(8, input_shape=(8, 8, 1)), ckpt, {})
    with zipfile.ZipFile(ckpt) as zf:
        assert "layersim.json" in zf.namelist()
    with pytest.raises(ExtractError, match=r"expects inputs of shape .*\(8, 8, 1\).*\(32, 32, 3\)"):
        extract_keras(ckpt, tiny_cifar.eval, tmp_path / "x.zarr", batch_size=4)
    with pytest.raises(ExtractError, match=r"missing\.keras does not exist; run the train step"):
        extract_keras(tmp_path / "missing.keras", tiny_cifar.eval, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()
