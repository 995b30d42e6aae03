"""Progress bars for the engine's loops and for downloads (the library itself never draws one)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def sample_progress():
    """A ``progress(iterable, total, desc)`` wrapper for ``sdt3_event.engine`` loops.

    The bar counts samples, not batches (``unit_scale`` = the loader's batch size), so its rate
    is throughput in samples/s and its ETA is the loop's remaining time. Drawn on stderr.
    """
    from tqdm import tqdm

    def wrap(iterable, total, desc):
        batch = getattr(iterable, "batch_size", None) or 1
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit="sample",
            unit_scale=batch,
            dynamic_ncols=True,
            leave=False,
            file=sys.stderr,
        )

    return wrap


@contextmanager
def byte_progress(desc: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A ``progress(done, total)`` callback drawing a byte bar on stderr, or None off a terminal.

    Used as ``with byte_progress(name) as progress: download(..., progress=progress)``; the bar is
    closed when the block ends, whatever happened.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=None, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=True)

    def update(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
