"""Progress bars (tqdm) for long work, including Dask graphs."""

from __future__ import annotations

from dask.callbacks import Callback
from tqdm.auto import tqdm


class DaskTqdm(Callback):
    """A tqdm bar over the tasks of the Dask computations run inside this context."""

    def __init__(self, desc: str = "", disable: bool = False):
        super().__init__()
        self.desc, self.disable = desc, disable
        self.bar = None

    def _start_state(self, dsk, state):
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar = tqdm(total=total, desc=self.desc, disable=self.disable, mininterval=1.0)

    def _posttask(self, key, result, dsk, state, worker_id):
        self.bar.update(1)

    def _finish(self, dsk, state, errored):
        if self.bar is not None:
            self.bar.close()
