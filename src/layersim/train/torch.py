"""Training of torch models: deterministic for a seed, atomic checkpoint + history."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from layersim.config import TrainConfigError, train_config
from layersim.data import Dataset, Split
from layersim.device import torch_device
from layersim.io import atomic_write, write_text
from layersim.models.torch import build_torch_model
from layersim.parallel import torch_threads

log = logging.getLogger(__name__)


def _batches(split: Split, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(len(split)) if rng is not None else np.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]


def evaluate(model, split: Split, batch_size: int = 256) -> float:
    """Top-1 accuracy of a torch model on a split (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with torch.no_grad():
        for images, labels in _batches(split, batch_size, None):
            pred = model(torch.from_numpy(images).to(device)).argmax(1).cpu().numpy()
            correct += int((pred == labels).sum())
    return correct / len(split)


def train_torch(
    arch: dict,
    train_cfg: dict,
    dataset: Dataset,
    *,
    seed: int,
    checkpoint: str | os.PathLike,
    history: str | os.PathLike,
    threads: int = 1,
    progress: bool = True,
    epoch_checkpoints: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Train a torch model, deterministically for a given ``seed`` (weights, batch order and kernels).

    ``train_cfg``: the ``train:`` settings (missing keys take the schema's defaults); ``optimizer:
    sgd`` decays ``lr`` to 0 over the epochs (cosine), ``adam`` keeps it constant. Writes the
    checkpoint (``{"state_dict", "arch", "num_classes", "in_channels", "seed", "epoch"}``, CPU
    tensors, loadable with ``torch.load(..., weights_only=True)``) and a JSON history (loss and
    accuracy per epoch, final eval accuracy; also returned), each atomically. ``epoch_checkpoints``
    maps epoch numbers to paths where the model after that epoch (0: at initialisation) is saved
    too. ``device`` is a torch device or ``auto`` (on a GPU: docs/cluster.md).
    """
    cfg = train_config(train_cfg)
    for key in ("mixed_precision", "xla"):
        if cfg.get(key):
            raise TrainConfigError(f"train.{key} applies to keras models only; remove it for the torch model {arch}")
    device = torch_device(device)
    if device != "cpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    with torch_threads(threads), _deterministic_algorithms():
        torch.manual_seed(seed)
        c, _, _ = dataset.image_shape
        model = build_torch_model(arch, num_classes=dataset.num_classes, in_channels=c).to(device)
        opt, sched = _optimizer(model, cfg)
        loss_fn = torch.nn.CrossEntropyLoss()
        rng = np.random.default_rng(seed)
        epochs = []
        start = time.perf_counter()
        epoch_checkpoints = {int(k): v for k, v in (epoch_checkpoints or {}).items()}

        def save(epoch, path):
            if path is None:
                return
            state = {
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},  # loads anywhere
                "arch": dict(arch),
                "num_classes": dataset.num_classes,
                "in_channels": c,
                "seed": seed,
                "epoch": epoch,
            }
            atomic_write(path, lambda p: torch.save(state, p))

        save(0, epoch_checkpoints.get(0))
        for epoch in range(1, cfg["epochs"] + 1):
            model.train()
            total_loss = correct = seen = 0
            bar = tqdm(list(_batches(dataset.train, cfg["batch_size"], rng)), desc=f"epoch {epoch}", disable=not progress, mininterval=2.0)
            for images, labels in bar:
                x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
                opt.zero_grad()
                out = model(x)
                loss = loss_fn(out, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {loss.item()} at epoch {epoch}; lower train.lr (now {cfg['lr']})"
                    )
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(y)
                correct += int((out.argmax(1) == y).sum())
                seen += len(y)
            if sched is not None:
                sched.step()
            save(epoch, epoch_checkpoints.get(epoch))
            epochs.append({"epoch": epoch, "loss": total_loss / seen, "accuracy": correct / seen})
            log.info("epoch %d: loss %.4f, accuracy %.4f", epoch, epochs[-1]["loss"], epochs[-1]["accuracy"])
        result = {
            "framework": "torch",
            "arch": arch,
            "train": cfg,
            "seed": seed,
            "epochs": epochs,
            "eval_accuracy": evaluate(model, dataset.eval),
            "train_seconds": time.perf_counter() - start,
            "device": device,
        }
        log.info("eval accuracy %.4f", result["eval_accuracy"])
        save(cfg["epochs"], checkpoint)
        write_text(history, json.dumps(result, indent=2))
        return result


@contextlib.contextmanager
def _deterministic_algorithms():
    """Context: torch's deterministic algorithms on, the previous setting restored on exit."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _optimizer(model, cfg: dict):
    """The optimizer and its per-epoch learning-rate schedule (None: constant)."""
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg["lr"]), None
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"])


def load_torch_checkpoint(path: str | os.PathLike):
    """Rebuild a model from a checkpoint written by :func:`train_torch` (``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_torch_model(state["arch"], num_classes=state["num_classes"], in_channels=state["in_channels"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state
