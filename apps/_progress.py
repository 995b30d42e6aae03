"""Progress bars for the engine's loops (the library itself never draws one)."""

from __future__ import annotations

import sys


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
