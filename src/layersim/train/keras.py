"""Training of Keras models under the ``tf.distribute`` strategy :func:`select_strategy` picks
(the seed notebook's setup): :func:`train_keras` writes a native ``.keras`` checkpoint whose extra
``layersim.json`` entry (ignored by Keras; :func:`read_checkpoint_metadata`) holds the provenance.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layersim.data import Dataset, Split
from layersim.io import atomic_write, write_text
from layersim.config import TrainConfigError, train_config
from layersim.models.keras import build_keras_model, import_keras, layer_names

log = logging.getLogger(__name__)

METADATA_ENTRY = "layersim.json"


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy :func:`select_strategy` chose, and why."""

    strategy: object  # tf.distribute.Strategy
    name: str  # "TPUStrategy", "MirroredStrategy", "OneDeviceStrategy" or "default"
    reason: str  # the log line explaining the choice
    policy: str  # the global Keras dtype policy set: float32, mixed_float16 or mixed_bfloat16
    replicas: int  # strategy.num_replicas_in_sync
    xla: bool

    def describe(self) -> dict:
        """JSON-able summary (for histories and checkpoint metadata)."""
        return {"strategy": self.name, "reason": self.reason, "policy": self.policy,
                "replicas": self.replicas, "xla": self.xla}


def select_strategy(*, mixed_precision: str | None = None, xla: bool = False) -> StrategyChoice:
    """Choose the ``tf.distribute`` strategy for this machine (a TPU → ``TPUStrategy``, several GPUs →
    ``MirroredStrategy``, one GPU → ``OneDeviceStrategy``, else the default) and set the *global*
    Keras dtype policy for ``mixed_precision`` (None, ``"float16"``, ``"bfloat16"`` or ``"auto"``)
    and XLA JIT (``xla``, global too); logs one line saying which and why. The policies:
    docs/keras.md, "Training".
    """
    if mixed_precision not in (None, "float16", "bfloat16", "auto"):
        raise TrainConfigError(
            f"mixed_precision must be null, 'float16', 'bfloat16' or 'auto', got {mixed_precision!r}"
        )
    import tensorflow as tf

    keras = import_keras()
    tf.config.optimizer.set_jit(bool(xla))
    try:
        tpu = tf.distribute.cluster_resolver.TPUClusterResolver()  # the notebook's probe
    except (ValueError, RuntimeError, ImportError, tf.errors.NotFoundError):
        tpu = None
    if tpu is not None:
        tf.config.experimental_connect_to_cluster(tpu)
        tf.tpu.experimental.initialize_tpu_system(tpu)
        strategy = tf.distribute.TPUStrategy(tpu)
        name, device = "TPUStrategy", "tpu"
        reason = f"TPU found by the cluster resolver ({tpu.master() or 'local'}): using TPUStrategy"
    else:
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) > 1:
            strategy, name, device = tf.distribute.MirroredStrategy(), "MirroredStrategy", "gpu"
            reason = f"{len(gpus)} GPUs found: using MirroredStrategy over all of them"
        elif len(gpus) == 1:
            strategy = tf.distribute.OneDeviceStrategy(device="/gpu:0")
            name, device = "OneDeviceStrategy", "gpu"
            reason = "one GPU found: using OneDeviceStrategy on /gpu:0"
        else:
            strategy, name, device = tf.distribute.get_strategy(), "default", "cpu"
            reason = "no TPU or GPU found: using the default (CPU) strategy"
    if mixed_precision is None or (mixed_precision == "auto" and device == "cpu"):
        policy = "float32"
    elif mixed_precision == "bfloat16" or device == "tpu":
        policy = "mixed_bfloat16"
    else:
        policy = "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    log.info("%s (dtype policy %s, XLA %s)", reason, policy, "on" if xla else "off")
    return StrategyChoice(strategy, name, reason, policy, int(strategy.num_replicas_in_sync), bool(xla))


def nhwc(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` → contiguous float32 ``(N, H, W, C)``."""
    return np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)), dtype=np.float32)


def _optimizer(keras, cfg: dict, steps: int):
    if cfg["optimizer"] == "adam":
        return keras.optimizers.Adam(learning_rate=cfg["lr"])
    schedule = keras.optimizers.schedules.CosineDecay(cfg["lr"], decay_steps=max(1, steps))
    return keras.optimizers.SGD(learning_rate=schedule, momentum=cfg["momentum"],
                                weight_decay=cfg["weight_decay"] or None)


def save_checkpoint(model, path: str | os.PathLike, metadata: dict) -> Path:
    """Save ``model`` natively to ``path`` (``.keras``) with ``metadata`` inside, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise TrainConfigError(f"Keras checkpoints are saved in the native format: {path} must end in .keras")

    def write(tmp: Path) -> None:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2, default=str))

    return atomic_write(path, write)


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The layersim metadata of a checkpoint written by :func:`save_checkpoint` (``{}`` if none)."""
    with zipfile.ZipFile(path) as zf:
        if METADATA_ENTRY not in zf.namelist():
            return {}
        return json.loads(zf.read(METADATA_ENTRY))


def evaluate_keras(model, split: Split, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model (logits or probabilities output) on a split."""
    correct = 0
    for start in range(0, len(split), batch_size):
        out = model.predict_on_batch(nhwc(split.images[start : start + batch_size]))
        correct += int((np.asarray(out).argmax(1) == split.labels[start : start + batch_size]).sum())
    return correct / len(split)


def train_keras(
    model_cfg: dict,
    train_cfg: dict | None,
    dataset: Dataset,
    out_path: str | os.PathLike,
    history_path: str | os.PathLike,
    seed: int,
) -> dict:
    """Train a Keras model on ``dataset.train`` under the strategy :func:`select_strategy` picks,
    deterministically for a ``seed`` on a given machine and strategy.

    ``model_cfg`` is the architecture (:func:`layersim.models.keras.build_keras_model`);
    ``train_cfg`` the ``train:`` settings, missing keys taking the schema's defaults. Writes the
    ``.keras`` checkpoint ``out_path`` and the JSON history ``history_path`` (both described in
    docs/keras.md, "Training") and returns the history.
    """
    cfg = train_config(train_cfg)
    import tensorflow as tf

    keras = import_keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    choice = select_strategy(mixed_precision=cfg["mixed_precision"], xla=cfg["xla"])
    c, h, w = dataset.image_shape
    steps = cfg["epochs"] * -(-len(dataset.train) // cfg["batch_size"])
    with choice.strategy.scope():
        model = build_keras_model(model_cfg, num_classes=dataset.num_classes, input_shape=(h, w, c))
        from_logits = model.layers[-1].name == "logits"  # cifar_resnet's output; seed_resnet's is a softmax
        model.compile(
            optimizer=_optimizer(keras, cfg, steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            metrics=["accuracy"],
            jit_compile=bool(cfg["xla"]),
        )
    x, y = nhwc(dataset.train.images), dataset.train.labels.astype(np.int64)
    start = time.perf_counter()
    fit = model.fit(x, y, batch_size=cfg["batch_size"], epochs=cfg["epochs"], shuffle=True, verbose=0)
    epochs = []
    for epoch, (loss, accuracy) in enumerate(zip(fit.history["loss"], fit.history["accuracy"]), start=1):
        log.info("epoch %d: loss %.4f, accuracy %.4f", epoch, loss, accuracy)
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at epoch {epoch}; lower train.lr (now {cfg['lr']})")
        epochs.append({"epoch": epoch, "loss": float(loss), "accuracy": float(accuracy)})
    provenance = {"framework": "keras", "arch": dict(model_cfg), "train": cfg, "seed": seed}
    result = {
        **provenance,
        "epochs": epochs,
        "eval_accuracy": evaluate_keras(model, dataset.eval, cfg["batch_size"]),
        "train_seconds": time.perf_counter() - start,
        "strategy": choice.name,
        "strategy_detail": choice.describe(),
        "output": "logits" if from_logits else "probabilities",
    }
    log.info("eval accuracy %.4f", result["eval_accuracy"])
    metadata = {
        **provenance,
        "epoch": cfg["epochs"],
        "dataset": dataset.name,
        "num_classes": dataset.num_classes,
        "input_shape": [h, w, c],
        **choice.describe(),
        "layers": layer_names(model),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    save_checkpoint(model, out_path, metadata)
    write_text(history_path, json.dumps(result, indent=2, default=str))
    return result
