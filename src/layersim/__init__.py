"""layersim: do these neural networks (and their layers) learn the same things?"""

import importlib

from layersim.version import __version__

__all__ = ["__version__", "compare_models", "MinibatchCKA"]
_LAZY = {"compare_models": "layersim.api", "MinibatchCKA": "layersim.engine"}  # name → its module


def __getattr__(name):  # lazy: importing layersim loads neither torch nor dask
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'layersim' has no attribute {name!r}")
