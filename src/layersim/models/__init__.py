"""Model zoos. ``layersim.models.torch`` (CIFAR ResNets) and ``layersim.models.keras``.

Framework adapters import their framework lazily: importing ``layersim.models`` loads neither.
"""

from layersim.errors import LayersimError


class ModelConfigError(LayersimError):
    """A model configuration that cannot be built (or weights that do not fit it)."""
