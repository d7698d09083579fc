"""layersim: do these neural networks (and their layers) learn the same things?"""

from layersim.version import __version__

__all__ = ["__version__", "compare_models", "MinibatchCKA"]


def __getattr__(name):  # lazy: importing layersim loads neither torch nor dask
    if name == "compare_models":
        from layersim.api import compare_models

        return compare_models
    if name == "MinibatchCKA":
        from layersim.engine import MinibatchCKA

        return MinibatchCKA
    raise AttributeError(f"module 'layersim' has no attribute {name!r}")
