"""Torch CIFAR models with stable layer names: ResNet v1 (:class:`CifarResNet`), Kornblith et al.'s
Tiny-10 and the thesis' zoo (VGG-11/13/16, ResNet-18/34, MobileNet v1/v2), each class documenting
its layers (what :func:`layer_names` lists and extraction records).
"""

from __future__ import annotations

import torch
from torch import nn

from layersim.models import ModelConfigError


class _Chain(nn.Sequential):
    """A sequence of modules named ``arch_name`` that refuses inputs of side below ``min_image_size``.
    Its width multiplier must be a positive ``width_type`` (``family`` names the model in the refusal)."""

    min_image_size = 0

    def __init__(self, arch_name: str, family: str, width, width_type: type | tuple = (int, float)):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, width_type) or not width > 0:
            number = "integer" if width_type is int else "number"
            raise ModelConfigError(f"{family} width multiplier must be a positive {number}, got {width!r}")
        self.arch_name = arch_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_image_size:
            raise ModelConfigError(
                f"{self.arch_name} needs inputs of side ≥ {self.min_image_size} (it downsamples by "
                f"{self.min_image_size}); got {tuple(x.shape[-2:])}: set dataset.image_size to "
                f"{self.min_image_size} or more"
            )
        return super().forward(x)


def _add_classifier(model: nn.Module, features: int, num_classes: int) -> None:
    """The ending every family shares: ``pool`` (global average pooling, flattened), ``logits``
    (linear), then He initialisation (fan-out, ReLU) of every convolution, as in He et al. (2016);
    weights on the meta device hold no values and are left as they are."""
    model.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.logits = nn.Linear(features, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _conv_bn_relu(module: nn.Module, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1, prefix: str = "", suffix: str = "", padding: int | None = None):
    """``module`` with ``{prefix}conv{suffix}``, ``{prefix}bn{suffix}``, ``{prefix}relu{suffix}`` added
    (the default ``padding`` keeps the side at stride 1)."""
    padding = kernel // 2 if padding is None else padding
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
    module.add_module(f"{prefix}conv{suffix}", conv)
    module.add_module(f"{prefix}bn{suffix}", nn.BatchNorm2d(out_ch))
    module.add_module(f"{prefix}relu{suffix}", nn.ReLU())
    return module


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers with a residual connection; ``relu2`` follows the addition."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        _conv_bn_relu(self, in_channels, out_channels, 3, stride, suffix="1")
        _conv_bn_relu(self, out_channels, out_channels, suffix="2")
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


def _resnet(model: nn.Module, in_channels: int, channels: list[int], blocks: tuple[int, ...], num_classes: int):
    """Add a ResNet's ``stem`` (3×3 convolution, stride 1), ``stage{s}`` of ``blocks[s - 1]`` basic
    blocks (stride 2 at the start of every stage but the first) and the classifier to ``model``."""
    model.stem = _conv_bn_relu(nn.Sequential(), in_channels, channels[0])
    in_ch = channels[0]
    for s, (out_ch, n) in enumerate(zip(channels, blocks), start=1):
        stage = nn.Sequential()
        for b in range(1, n + 1):
            stage.add_module(f"block{b}", BasicBlock(in_ch, out_ch, 2 if (s > 1 and b == 1) else 1))
            in_ch = out_ch
        setattr(model, f"stage{s}", stage)
    _add_classifier(model, in_ch, num_classes)


class CifarResNet(_Chain):
    """ResNet v1 for small images (He et al. 2016, §4.2): depth ``6n + 2``, three stages of ``n`` basic
    blocks with ``16·width``, ``32·width`` and ``64·width`` channels. Layers, in forward order::

        stem.conv  stem.bn  stem.relu
        stage{s}.block{b}.conv1  .bn1  .relu1  .conv2  .bn2  .relu2      s = 1..3, b = 1..n
        pool  logits

    ``relu2`` is the block output (after the residual addition); projection shortcuts are not
    layers. Depth ``6n + 2`` has ``3 + 18n + 2`` layers (59 for ResNet-20).
    """

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, in_channels: int = 3):
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ModelConfigError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth}")
        super().__init__(f"ResNet-{depth}", "ResNet", width, int)
        n = (depth - 2) // 6
        _resnet(self, in_channels, [16 * width, 32 * width, 64 * width], (n, n, n), num_classes)


class Tiny10(_Chain):
    """Kornblith et al. (2019)'s "Tiny-10" CNN (their Table 3): eight convolutions (:attr:`SPEC`),
    each followed by batch norm and ReLU, then global average pooling and the logits.

    Layers (:func:`layer_names`): ``layer{i}.conv``, ``layer{i}.bn``, ``layer{i}.relu`` for
    i = 1..8, then ``pool`` and ``logits`` (26 in all). The valid 3×3 convolution needs at least
    3×3 inputs, i.e. images of side ≥ 9 (digits: ``image_size: 16``).
    """

    SPEC = ((1, 3, 1, 1), (1, 3, 1, 1), (2, 3, 2, 1), (2, 3, 1, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 0), (4, 1, 1, 0))
    """(channel multiple of 16·width, kernel, stride, padding) of each convolution."""

    def __init__(self, width: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__("Tiny-10", "Tiny-10", width, int)
        in_ch = in_channels
        for i, (mult, kernel, stride, padding) in enumerate(self.SPEC, start=1):
            out_ch = 16 * width * mult
            layer = _conv_bn_relu(nn.Sequential(), in_ch, out_ch, kernel, stride, padding=padding)
            setattr(self, f"layer{i}", layer)
            in_ch = out_ch
        _add_classifier(self, in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 9:
            raise ModelConfigError(f"Tiny-10 needs inputs of side ≥ 9 (its valid 3×3 convolution sees side/4); got {tuple(x.shape[-2:])}: set dataset.image_size to 16 or more")
        return super().forward(x)


# --- The thesis' CIFAR-100 zoo (ch. 3, Fig. 3.4): VGG, four-stage ResNet, MobileNet v1/v2 -------
# CIFAR-style: a 3×3 stem of stride 1 and global average pooling before one linear layer.


def _channels(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class BlockOutput(nn.Identity):
    """Marks the output of a residual block (after the addition) as a layer of its own."""


class CifarVGG(_Chain):
    """VGG-11/13/16 with batch norm (Simonyan & Zisserman 2015, configurations A, B, D) for CIFAR.

    Five stages of 3×3 convolutions (:attr:`CONFIGS`: channels, × width), each closed by a 2×2 max
    pool; no 4096-wide classifier. Layers: ``stage{s}.conv{i}``, ``.bn{i}``, ``.relu{i}`` (i counts
    within the stage; max pools are not layers), ``pool``, ``logits``. Inputs of side ≥ 32.
    """

    CONFIGS = {
        11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
        13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
        16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    }
    min_image_size = 32

    def __init__(self, depth: int = 16, width: float = 1, num_classes: int = 10, in_channels: int = 3):
        if depth not in self.CONFIGS:
            raise ModelConfigError(f"vgg depth must be 11, 13 or 16, got {depth}")
        super().__init__(f"VGG-{depth}", "vgg", width)
        in_ch = in_channels
        for s, stage in enumerate(self.CONFIGS[depth], start=1):
            layers = nn.Sequential()
            for i, c in enumerate(stage, start=1):
                out_ch = _channels(c, width)
                _conv_bn_relu(layers, in_ch, out_ch, suffix=str(i))
                in_ch = out_ch
            layers.maxpool = nn.MaxPool2d(2)
            setattr(self, f"stage{s}", layers)
        _add_classifier(self, in_ch, num_classes)


class CifarResNet4(_Chain):
    """ResNet-18/34 (He et al. 2016, the four-stage ImageNet design) with a CIFAR stem.

    A stem with 64·width channels (no max pool) and four stages of basic blocks (:attr:`BLOCKS`)
    with 64, 128, 256, 512 channels × width (stride 2 and a projection shortcut at the start of
    stages 2–4). Layers as :class:`CifarResNet`, with s = 1..4. It downsamples by 8: side ≥ 8.
    """

    BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    min_image_size = 8

    def __init__(self, depth: int = 18, width: float = 1, num_classes: int = 10, in_channels: int = 3):
        if depth not in self.BLOCKS:
            raise ModelConfigError(f"resnet4stage depth must be 18 or 34, got {depth}")
        super().__init__(f"ResNet-{depth}", "resnet4stage", width)
        channels = [_channels(c, width) for c in (64, 128, 256, 512)]
        _resnet(self, in_channels, channels, self.BLOCKS[depth], num_classes)


class CifarMobileNet(_Chain):
    """MobileNet v1 (Howard et al. 2017) for CIFAR: depthwise separable convolutions.

    A 3×3 stride-1 stem convolution (32·width channels), then 13 blocks (:attr:`BLOCKS`), each a 3×3
    depthwise convolution and a 1×1 pointwise convolution, each followed by batch norm and ReLU,
    global average pooling, linear logits: 28 weighted layers. Layers: ``stem.{conv,bn,relu}``,
    ``block{i}.{dw_conv,dw_bn,dw_relu,pw_conv,pw_bn,pw_relu}`` (i = 1..13), ``pool``, ``logits``.
    It downsamples by 16: inputs of side ≥ 16.
    """

    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
    """(output channels, depthwise stride) of each block."""
    min_image_size = 16

    def __init__(self, width: float = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__("MobileNet", "mobilenet", width)
        in_ch = _channels(32, width)
        self.stem = _conv_bn_relu(nn.Sequential(), in_channels, in_ch)
        for i, (c, stride) in enumerate(self.BLOCKS, start=1):
            out_ch = _channels(c, width)
            block = _conv_bn_relu(nn.Sequential(), in_ch, in_ch, 3, stride, groups=in_ch, prefix="dw_")
            _conv_bn_relu(block, in_ch, out_ch, 1, prefix="pw_")
            setattr(self, f"block{i}", block)
            in_ch = out_ch
        _add_classifier(self, in_ch, num_classes)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expansion (absent when t = 1), 3×3 depthwise, linear 1×1 projection;
    a residual connection (and the ``out`` layer after the addition) when stride is 1 and the
    channels are unchanged."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        if expansion != 1:
            _conv_bn_relu(self, in_ch, hidden, 1, prefix="expand_")
        _conv_bn_relu(self, hidden, hidden, 3, stride, groups=hidden, prefix="dw_")
        self.project_conv = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        if self.residual:
            self.out = BlockOutput()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for name, module in self.named_children():  # the layers in order, ``out`` last
            if name != "out":
                h = module(h)
        return self.out(x + h) if self.residual else h


class CifarMobileNetV2(_Chain):
    """MobileNetV2 (Sandler et al. 2018) for CIFAR: inverted residual blocks with linear bottlenecks.

    A 3×3 stride-1 stem convolution (32·width channels), the paper's 17 blocks (:attr:`SETTINGS`;
    the CIFAR variant keeps stride 1 in the stem and the 24-channel stage), a 1×1 convolution to
    1280·width channels, global average pooling, linear logits: 53 weighted layers. Layers:
    ``stem.{conv,bn,relu}``, ``block{i}.{expand_conv,expand_bn,expand_relu}`` (not in block 1,
    t = 1), ``block{i}.{dw_conv,dw_bn,dw_relu,project_conv,project_bn}``, ``block{i}.out`` (residual
    blocks only: the sum), ``head.{conv,bn,relu}``, ``pool``, ``logits``. It downsamples by 8:
    inputs of side ≥ 8.
    """

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    """(expansion t, output channels c, repeats n, stride s of the first) of each group of blocks."""
    min_image_size = 8

    def __init__(self, width: float = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__("MobileNetV2", "mobilenetv2", width)
        in_ch = _channels(32, width)
        self.stem = _conv_bn_relu(nn.Sequential(), in_channels, in_ch)
        blocks = [(t, _channels(c, width), s if r == 0 else 1) for t, c, n, s in self.SETTINGS for r in range(n)]
        for i, (t, out_ch, stride) in enumerate(blocks, start=1):
            setattr(self, f"block{i}", InvertedResidual(in_ch, out_ch, stride, t))
            in_ch = out_ch
        head_ch = _channels(1280, width)
        self.head = _conv_bn_relu(nn.Sequential(), in_ch, head_ch, 1)
        _add_classifier(self, head_ch, num_classes)


def layer_names(model: nn.Module) -> list[str]:
    """The names of the modules whose outputs count as layers, in registration (= forward) order: the
    Conv2d, BatchNorm2d, ReLU, Linear and :class:`BlockOutput` modules outside shortcuts, and ``pool``."""
    layer_types = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear, BlockOutput)
    return [name for name, module in model.named_modules()
            if ".shortcut" not in f".{name}" and (isinstance(module, layer_types) or name == "pool")]


def build_torch_model(arch: dict, *, num_classes: int, in_channels: int) -> nn.Module:
    """Build the torch model an architecture config ``{"family", "depth", "width"}`` describes (the
    families, depths and widths: ``models`` in workflow/schemas/config.schema.yaml)."""
    family, width = arch.get("family", "resnet"), arch.get("width", 1)
    by_depth = {"resnet": CifarResNet, "vgg": CifarVGG, "resnet4stage": CifarResNet4}
    if family in by_depth:
        return by_depth[family](arch["depth"], width, num_classes, in_channels)
    for name, cls, depth, layers in (("tiny10", Tiny10, 10, "layers (8 convolutions, pooling, logits)"),
                                     ("mobilenet", CifarMobileNet, 28, "weighted layers"),
                                     ("mobilenetv2", CifarMobileNetV2, 53, "weighted layers")):
        if family == name:
            if arch.get("depth", depth) != depth:
                raise ModelConfigError(f"{name} has {depth} {layers}: depth must be {depth}, got {arch['depth']}")
            return cls(width, num_classes, in_channels)
    raise ModelConfigError(f"unknown torch model family {family!r}: expected one of {', '.join(TORCH_FAMILIES)}")


TORCH_FAMILIES = ("resnet", "tiny10", "vgg", "resnet4stage", "mobilenet", "mobilenetv2")
"""The ``family`` values :func:`build_torch_model` builds."""


class LayerRecorder:
    """Context manager recording the outputs of named modules during forward passes.

    >>> model = CifarResNet(8, 1, num_classes=10, in_channels=1)
    >>> with LayerRecorder(model, layer_names(model)) as rec:
    ...     _ = model.eval()(torch.zeros(2, 1, 8, 8))
    >>> len(rec.outputs), tuple(rec.outputs["stage3.block1.relu2"].shape)
    (23, (2, 64, 2, 2))
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self._modules = dict(model.named_modules())
        missing = [n for n in names if n not in self._modules]
        if missing:
            raise ModelConfigError(f"model has no layers named {missing}; available: {layer_names(model)}")
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "LayerRecorder":
        for name in self.names:
            def hook(_module, _inputs, output, name=name):
                self.outputs[name] = output.detach()

            self._handles.append(self._modules[name].register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def take(self) -> dict[str, torch.Tensor]:
        """The outputs of the last forward pass, in layer order; clears the record."""
        out = {name: self.outputs[name] for name in self.names}
        self.outputs = {}
        return out
