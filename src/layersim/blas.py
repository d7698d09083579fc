"""Which OpenBLAS kernels compute the engine's float32 Grams: chosen before numpy loads OpenBLAS.

numpy's OpenBLAS picks its kernels by CPU when it is loaded (``OPENBLAS_CORETYPE`` overrides
the choice), so a process must choose before it first imports numpy. This module imports
nothing but the standard library.
"""

from __future__ import annotations

import os
import sys

ZEN4_FAMILY = 25  # AMD family 19h: Zen 3 (no AVX-512) and Zen 4


def gram_coretype(cpuinfo: str) -> str | None:
    """The ``OPENBLAS_CORETYPE`` whose kernels compute float32 Grams faster than the ones
    OpenBLAS picks itself on the CPU that ``cpuinfo`` (the text of ``/proc/cpuinfo``)
    describes, or ``None`` where its own pick is the one to keep.

    On AMD Zen 4 (family 25 with AVX-512) OpenBLAS picks its SkylakeX kernels, written for
    CPUs that run 512-bit instructions at full width; Zen 4 runs them as two 256-bit halves.
    Its Haswell (AVX2) kernels there: single-threaded ``ssyrk`` at n = 256, p = 4,096–16,384
    88–92 against 75 GFLOP/s, the standard workload's engine 0.75–0.77 against 0.89 s (two
    alternating pairs of ``bench_engine`` runs), the 4096² float32 GEMM no slower; float64
    GEMM was 12 % slower, so this is for float32 only (see :func:`prefer_gram_kernels`).
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    is_zen4 = fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == str(ZEN4_FAMILY) and "avx512f" in flags
    return "Haswell" if is_zen4 and {"avx2", "fma"} <= flags else None


def prefer_gram_kernels(dtype: str = "float32", cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set ``OPENBLAS_CORETYPE`` for this process to :func:`gram_coretype`'s choice, where
    there is one, ``dtype`` is ``float32``, the variable is not set already (a user's choice
    stays) and numpy is not imported yet (after that it would change nothing). Returns the
    core type set, or ``None``. The similarity rule's script calls it first; in a notebook, call
    it before importing numpy, or set the variable before starting Python."""
    if dtype != "float32" or "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return None
    try:
        with open(cpuinfo_path) as f:
            coretype = gram_coretype(f.read())
    except OSError:  # not Linux: OpenBLAS's own pick
        return None
    if coretype is not None:
        os.environ["OPENBLAS_CORETYPE"] = coretype
    return coretype
