"""Which torch device a stage runs on: config ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

``auto`` is the GPU when the job sees one and the CPU otherwise (decided without importing torch
on a machine without the NVIDIA driver).
"""

from __future__ import annotations

import os
import re

from layersim.errors import LayersimError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


def torch_device(name: str = "auto") -> str:
    """Resolve a configured device name to a torch device string (``"cpu"`` or ``"cuda[:N]"``).

    Raises :class:`~layersim.errors.LayersimError` for an unknown name or a GPU that is not there.
    """
    name = str(name).strip().lower()
    if not re.match(DEVICE_PATTERN, name):
        raise LayersimError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "cpu" or (name == "auto" and not os.path.exists("/proc/driver/nvidia")):
        return "cpu"
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return "cuda" if available else "cpu"
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= available:
        raise LayersimError(
            f"device {name!r} was asked for but this job sees {available} CUDA device(s) "
            f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "set device: auto or cpu, or give the job a GPU (config resources.<rule>.gpu)"
        )
    return name
