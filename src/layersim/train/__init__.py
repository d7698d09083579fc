"""Training: :mod:`.torch` (the torch zoo, SGD or Adam) and :mod:`.keras` (Keras 3 under the
strategy picked at start: TPU, GPUs or CPU). Checkpoints and histories are written atomically."""
