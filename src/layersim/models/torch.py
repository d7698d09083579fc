"""CIFAR-style ResNet v1 in torch (He et al. 2016, §4.2), with stable layer names.

Depth ``6n + 2``: a 3×3 stem convolution with ``16·width`` channels, three stages of ``n`` basic
blocks with ``16·width``, ``32·width`` and ``64·width`` channels (stride 2 at the start of stages 2
and 3, where a 1×1 convolution + batch norm projects the shortcut), global average pooling and a
linear layer producing the logits.

Layers (what :func:`layer_names` lists and extraction records), in forward order::

    stem.conv  stem.bn  stem.relu
    stage{s}.block{b}.conv1  .bn1  .relu1  .conv2  .bn2  .relu2      s = 1..3, b = 1..n
    pool  logits

``relu2`` is the block output (after the residual addition). Projection shortcuts are not
listed as layers. A ResNet of depth ``6n + 2`` has ``3 + 18n + 2`` layers (59 for ResNet-20).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from layersim.errors import LayersimError


class ModelConfigError(LayersimError):
    """A model configuration that cannot be built."""


def _init_convs(model: nn.Module) -> None:
    """He initialisation (fan-out, ReLU) of every convolution, as in He et al. (2016)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers with a residual connection; ``relu2`` follows the addition."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
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


class CifarResNet(nn.Module):
    """ResNet v1 for small images: depth ``6n + 2``, base width ``16 · width``."""

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ModelConfigError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth}")
        if width < 1:
            raise ModelConfigError(f"ResNet width multiplier must be a positive integer, got {width}")
        n = (depth - 2) // 6
        channels = [16 * width, 32 * width, 64 * width]
        self.depth, self.width = depth, width
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
                bn=nn.BatchNorm2d(channels[0]),
                relu=nn.ReLU(),
            )
        )
        in_ch = channels[0]
        for s, out_ch in enumerate(channels, start=1):
            blocks = OrderedDict()
            for b in range(1, n + 1):
                stride = 2 if (s > 1 and b == 1) else 1
                blocks[f"block{b}"] = BasicBlock(in_ch, out_ch, stride)
                in_ch = out_ch
            setattr(self, f"stage{s}", nn.Sequential(blocks))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.logits = nn.Linear(in_ch, num_classes)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.logits(self.pool(x))


class Tiny10(nn.Module):
    """Kornblith et al. (2019)'s "Tiny-10" CNN (their Table 3), with stable layer names.

    Eight convolutions, each followed by batch norm and ReLU, then global average pooling and
    the logits (``c = 16·width``)::

        layer1  3×3 conv c            layer5  3×3 conv 2c
        layer2  3×3 conv c            layer6  3×3 conv 4c, stride 2
        layer3  3×3 conv 2c, stride 2 layer7  3×3 conv 4c, valid padding
        layer4  3×3 conv 2c           layer8  1×1 conv 4c
        pool    global average pool   logits  linear

    Layers (:func:`layer_names`): ``layer{i}.conv``, ``layer{i}.bn``, ``layer{i}.relu`` for
    i = 1..8, then ``pool`` and ``logits`` (26 in all). The valid 3×3 convolution needs at least
    3×3 inputs, i.e. images of side ≥ 9 (digits: ``image_size: 16``).
    """

    SPEC = ((1, 3, 1, 1), (1, 3, 1, 1), (2, 3, 2, 1), (2, 3, 1, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 0), (4, 1, 1, 0))
    """(channel multiple of 16·width, kernel, stride, padding) of each convolution."""

    def __init__(self, width: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if width < 1:
            raise ModelConfigError(f"Tiny-10 width multiplier must be a positive integer, got {width}")
        in_ch = in_channels
        for i, (mult, kernel, stride, padding) in enumerate(self.SPEC, start=1):
            out_ch = 16 * width * mult
            block = OrderedDict(conv=nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False), bn=nn.BatchNorm2d(out_ch), relu=nn.ReLU())
            setattr(self, f"layer{i}", nn.Sequential(block))
            in_ch = out_ch
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.logits = nn.Linear(in_ch, num_classes)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 9:
            raise ModelConfigError(f"Tiny-10 needs inputs of side ≥ 9 (its valid 3×3 convolution sees side/4); got {tuple(x.shape[-2:])}: set dataset.image_size to 16 or more")
        for i in range(1, len(self.SPEC) + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.logits(self.pool(x))


_LAYER_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear)


def layer_names(model: nn.Module) -> list[str]:
    """The names of the modules whose outputs count as layers, in forward order.

    For :class:`CifarResNet` these are the convolutions, batch norms and ReLUs outside
    projection shortcuts, then ``pool`` and ``logits``. For any other module: every Conv2d,
    BatchNorm2d, ReLU and Linear in registration order (shortcut branches excluded).
    """
    names = []
    for name, module in model.named_modules():
        if ".shortcut" in f".{name}":
            continue
        if isinstance(module, _LAYER_TYPES) or name == "pool":
            names.append(name)
    return names


def build_torch_model(arch: dict, *, num_classes: int, in_channels: int) -> nn.Module:
    """Build the torch model an architecture config describes.

    Parameters
    ----------
    arch : dict
        ``{"family": "resnet", "depth": 6n+2, "width": k}`` or ``{"family": "tiny10", "depth": 10,
        "width": k}`` (:class:`Tiny10`).
    """
    family = arch.get("family", "resnet")
    if family == "resnet":
        return CifarResNet(arch["depth"], arch.get("width", 1), num_classes, in_channels)
    if family == "tiny10":
        if arch.get("depth", 10) != 10:
            raise ModelConfigError(f"tiny10 has 10 layers (8 convolutions, pooling, logits): depth must be 10, got {arch['depth']}")
        return Tiny10(arch.get("width", 1), num_classes, in_channels)
    raise ModelConfigError(f"unknown torch model family {family!r}: expected 'resnet' or 'tiny10'")


class LayerRecorder:
    """Context manager recording the outputs of named modules during forward passes.

    >>> model = CifarResNet(8, 1, num_classes=10, in_channels=1)
    >>> with LayerRecorder(model, layer_names(model)) as rec:
    ...     _ = model.eval()(torch.zeros(2, 1, 8, 8))
    >>> len(rec.outputs), tuple(rec.outputs["stage3.block1.relu2"].shape)
    (23, (2, 64, 2, 2))
    """

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ModelConfigError(f"model has no layers named {missing}; available: {layer_names(model)}")
        self.model, self.names = model, list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._modules = modules
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
