"""Progress bars (tqdm) for long work, including Dask graphs."""

from __future__ import annotations

from tqdm.dask import TqdmCallback


class DaskTqdm(TqdmCallback):
    """A tqdm bar over the tasks of the Dask computations run inside this context."""

    def __init__(self, desc: str = "", disable: bool = False):
        super().__init__(desc=desc, disable=disable, mininterval=1.0)
        self.pbar = None

    def _finish(self, *args):
        if self.pbar is not None:  # None: the graph failed before its first task
            super()._finish(*args)
