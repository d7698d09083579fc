"""Threads: how many, how work is split between them, and BLAS kept to one thread each.

A pool lives for one call (:func:`thread_pool`), a BLAS limit for one block
(:func:`single_blas_thread`); neither outlives it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor


def default_threads() -> int:
    """Threads used when not told: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def thread_count(threads: int | None) -> int:
    """A ``threads`` argument as a count: ``None`` means every CPU this process may run on."""
    return default_threads() if threads is None else max(1, int(threads))


def thread_pool(threads: int, purpose: str = "gram") -> ThreadPoolExecutor:
    """A thread pool for one call (use it as a context manager: its threads end with it),
    its threads named ``layersim-<purpose>``."""
    return ThreadPoolExecutor(threads, thread_name_prefix=f"layersim-{purpose}")


@functools.cache
def _blas_libraries():
    """threadpoolctl's handle on the loaded BLAS libraries (found once; holds no setting)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_blas_thread():
    """Context: one BLAS thread in every loaded BLAS library, restored on exit."""
    return _blas_libraries().limit(limits=1, user_api="blas")


@contextlib.contextmanager
def torch_threads(threads: int):
    """Context: torch's intra-op threads set to ``threads`` (at least 1), restored on exit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def balanced_blocks(sizes: Sequence[int], block: int, min_blocks: int = 1) -> list[list[int]]:
    """Indices of ``sizes`` split into blocks of at most ``block`` items, at least ``min_blocks``
    blocks (when there are as many items), balanced by size, largest first.

    >>> balanced_blocks([5, 1, 4, 2], block=2)
    [[0, 1], [2, 3]]
    """
    n_blocks = min(len(sizes), max(-(-len(sizes) // block), min_blocks))
    blocks: list[list[int]] = [[] for _ in range(n_blocks)]
    load = [0] * n_blocks
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = min((j for j in range(n_blocks) if len(blocks[j]) < block), key=lambda j: load[j])
        blocks[j].append(i)
        load[j] += sizes[i]
    return [sorted(b) for b in blocks if b]
