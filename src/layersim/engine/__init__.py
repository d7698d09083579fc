"""Minibatch CKA (Nguyen, Raghu & Kornblith 2021), the estimator of ``docs/design.md``: Grams
(:mod:`.grams`), HSIC sums (:mod:`.accumulator`), over activation stores as a Dask graph (:mod:`.stores`)."""

from layersim.engine.accumulator import MinibatchCKA, minibatch_rows
from layersim.engine.grams import MIN_BATCH, BatchGrams, EstimatorError, NonFiniteInputError, UndefinedLayerWarning, u_centred_gram
from layersim.engine.stores import compare_gram_stores, compare_stores, write_gram_store

__all__ = ["MIN_BATCH", "BatchGrams", "EstimatorError", "MinibatchCKA", "NonFiniteInputError", "UndefinedLayerWarning", "compare_gram_stores", "compare_stores", "minibatch_rows", "u_centred_gram", "write_gram_store"]
