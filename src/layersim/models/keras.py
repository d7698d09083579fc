"""Keras models: the seed notebook's ResNet50/101/152 and a CIFAR ResNet v1 with stable names.

TensorFlow is imported only when a model is built (``import layersim.models.keras`` is cheap).
Layer names and counts, and the differences from the torch model: docs/keras.md, "Models".
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from layersim.models import ModelConfigError

SEED_DEPTHS = (50, 101, 152)


def import_keras():
    """Import Keras 3 with the TensorFlow backend (``KERAS_BACKEND`` defaults to tensorflow)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ModelConfigError(
            f"layersim's Keras models need the TensorFlow backend, but Keras uses "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow"
        )
    return keras


def cifar_resnet(
    depth: int = 20,
    width: int = 1,
    num_classes: int = 10,
    input_shape: tuple[int, ...] | None = None,
    in_channels: int | None = None,
):
    """CIFAR ResNet v1 (He et al. 2016, §4.2) as a Keras functional model named ``resnet{depth}x{width}``.

    ``depth`` is ``6n + 2`` (``n`` basic blocks per stage); stages have ``16·width``, ``32·width``
    and ``64·width`` channels. ``input_shape`` is ``(height, width)`` or ``(height, width,
    channels)`` (default ``(32, 32, in_channels)``; ``in_channels`` defaults to 3). NHWC input;
    ``logits`` is a linear Dense layer (pre-softmax, float32 even under mixed precision).
    """
    _check_cifar_resnet(depth, width)
    if num_classes < 1:
        raise ModelConfigError(f"num_classes must be positive, got {num_classes}")
    shape = tuple(int(s) for s in input_shape or (32, 32))
    if len(shape) == 2:
        shape = (*shape, in_channels or 3)
    if len(shape) != 3:
        raise ModelConfigError(f"input_shape must be (height, width) or (height, width, channels), got {input_shape}")
    if in_channels is not None and in_channels != shape[2]:
        raise ModelConfigError(f"input_shape {shape} has {shape[2]} channels but in_channels={in_channels}")
    keras = import_keras()
    L = keras.layers
    n = (depth - 2) // 6

    def conv_bn(x, filters, size, stride, prefix, suffix=""):
        """``{prefix}conv{suffix}`` (Kaiming normal, fan_out, as the torch model's) and ``{prefix}bn{suffix}``."""
        init = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
        x = L.Conv2D(filters, size, strides=stride, padding="same", use_bias=False, kernel_initializer=init,
                     name=f"{prefix}conv{suffix}")(x)
        return L.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}bn{suffix}")(x)

    inputs = keras.Input(shape=shape, name="input")
    channels = [16 * width, 32 * width, 64 * width]
    x = conv_bn(inputs, channels[0], 3, 1, "stem.")
    x = L.ReLU(name="stem.relu")(x)
    for s, out_ch in enumerate(channels, start=1):
        for b in range(1, n + 1):
            p = f"stage{s}.block{b}."
            stride = 2 if (s > 1 and b == 1) else 1
            y = conv_bn(x, out_ch, 3, stride, p, "1")
            y = L.ReLU(name=f"{p}relu1")(y)
            y = conv_bn(y, out_ch, 3, 1, p, "2")
            shortcut = x
            if stride != 1:  # the block that halves the side also doubles the channels
                shortcut = conv_bn(x, out_ch, 1, stride, f"{p}shortcut.")
            x = L.Add(name=f"{p}add")([y, shortcut])
            x = L.ReLU(name=f"{p}relu2")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    logits = L.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"resnet{depth}x{width}")


def seed_resnet(
    depth: int = 50,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    weights: str | os.PathLike | None = None,
):
    """The seed notebook's ResNet: ``keras.applications.ResNet{depth}`` (pooled, no top), then ``logits``
    (Dense, linear) and ``predictions`` (softmax, float32: the model's output); see docs/keras.md.

    ``input_shape`` is at least 32×32. ``weights`` is a local file, never downloaded: a Keras
    applications "notop" file or a ``*.weights.h5`` file saved from this whole model; one saved
    for a different architecture raises :class:`ModelConfigError`.
    """
    shape = _check_seed_resnet(depth, input_shape)
    weights_path = None
    if weights is not None:
        if str(weights) == "imagenet":
            raise ModelConfigError(
                "weights='imagenet' would download from the internet; download "
                f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5 yourself and give its path"
            )
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise ModelConfigError(f"weights file {weights_path} does not exist")
        if not weights_path.name.endswith(".h5"):
            raise ModelConfigError(
                f"weights file {weights_path}: expected a Keras applications '*_notop.h5' file or a "
                "'*.weights.h5' file saved with model.save_weights()"
            )
    keras = import_keras()
    application = getattr(keras.applications, f"ResNet{depth}")
    base = application(include_top=False, weights=None, input_shape=shape, pooling="avg")
    x = keras.layers.Dense(num_classes, name="logits")(base.output)
    out = keras.layers.Activation("softmax", name="predictions", dtype="float32")(x)
    model = keras.Model(base.input, out, name=f"resnet{depth}")
    if weights_path is not None:
        full = weights_path.name.endswith(".weights.h5")
        target = model if full else base
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras warns once per layer it cannot match
                target.load_weights(str(weights_path))
        except Exception as err:  # ValueError for shape/count mismatches, KeyError/OSError for foreign files
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelConfigError(
                f"weights file {weights_path} does not fit ResNet{depth} with input {shape} and "
                f"{num_classes} classes (loaded as {'a whole-model' if full else 'a notop body'} weights "
                f"file): it was saved for a different architecture ({first_line[:300]})"
            ) from err
    return model


def _check_cifar_resnet(depth, width) -> None:
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ModelConfigError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth}")
    if not isinstance(width, int) or width < 1:
        raise ModelConfigError(f"ResNet width multiplier must be a positive integer, got {width}")


def _check_seed_resnet(depth, input_shape) -> tuple[int, ...]:
    if depth not in SEED_DEPTHS:
        raise ModelConfigError(f"seed ResNet depth must be one of {SEED_DEPTHS} (keras.applications), got {depth}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape[:2]) < 32:
        raise ModelConfigError(f"seed ResNet input_shape must be (height, width, channels) with height, width >= 32, got {input_shape}")
    return shape


def check_keras_arch(arch: dict, *, input_shape: tuple[int, int, int]) -> None:
    """The checks :func:`build_keras_model` makes before building (no TensorFlow needed)."""
    family = arch.get("family", "resnet")
    if family == "resnet":
        _check_cifar_resnet(arch.get("depth", 20), arch.get("width", 1))
    elif family == "seed_resnet":
        _check_seed_resnet(arch.get("depth", 50), input_shape)
    else:
        raise ModelConfigError(f"unknown Keras model family {family!r}: expected 'resnet' or 'seed_resnet'")


def build_keras_model(arch: dict, *, num_classes: int, input_shape: tuple[int, int, int]):
    """Build the Keras model an architecture config describes: ``{"family": "resnet", "depth": 6n+2,
    "width": k}`` (:func:`cifar_resnet`) or ``{"family": "seed_resnet", "depth": 50|101|152, "weights":
    path|None}`` (:func:`seed_resnet`); other keys are ignored. ``input_shape`` is ``(height, width,
    channels)``.
    """
    check_keras_arch(arch, input_shape=input_shape)
    if arch.get("family", "resnet") == "resnet":
        return cifar_resnet(arch.get("depth", 20), arch.get("width", 1), num_classes, input_shape)
    return seed_resnet(arch.get("depth", 50), num_classes, input_shape, arch.get("weights"))


def layer_names(model, *, torch_equivalent: bool = False) -> list[str]:
    """Names of the layers whose outputs are recorded: every layer but the InputLayer.

    ``torch_equivalent=True`` drops the layers a torch :class:`~layersim.models.torch.CifarResNet`
    does not list (``*.shortcut.*`` and ``*.add``).
    """
    keras = import_keras()
    names = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if torch_equivalent:
        names = [n for n in names if ".shortcut." not in n and not n.endswith(".add")]
    return names


__all__ = ["SEED_DEPTHS", "ModelConfigError", "build_keras_model", "check_keras_arch", "cifar_resnet", "import_keras",
           "layer_names", "seed_resnet"]
