"""Extraction: every layer's output over the evaluation split into an activation store
(:mod:`layersim.store`), from a torch (:mod:`.torch`) or Keras (:mod:`.keras`) checkpoint."""
