"""Model zoos. ``layersim.models.torch`` (CIFAR ResNets) and ``layersim.models.keras``.

Framework adapters import their framework lazily: importing ``layersim.models`` loads neither.
"""
