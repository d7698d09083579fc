#!/usr/bin/env python3
"""cluster-generic status command of the TPU profile (see tpu_vm.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tpu_vm  # noqa: E402

sys.argv[1:1] = ["status"]
exec(compile(Path(tpu_vm.__file__).read_text(), tpu_vm.__file__, "exec"), {"__name__": "__main__", "__file__": tpu_vm.__file__})
