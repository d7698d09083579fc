"""layersim: do these neural networks (and their layers) learn the same things?"""

__version__ = "0.1.0"
