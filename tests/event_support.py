"""Event arrays and recordings for the reader and stream tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np

from sdt3_event.events.schema import make_events


def random_events(
    n: int = 2000,
    w: int = 128,
    h: int = 128,
    seed: int = 0,
    t_max: int = 1_000_000,
    t_min: int = 0,
) -> np.ndarray:
    """``n`` events, uniform over a ``w`` x ``h`` sensor and ``[t_min, t_max)`` µs, sorted by time."""
    rng = np.random.default_rng(seed)
    return make_events(
        np.sort(rng.integers(t_min, t_max, n)),
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        rng.integers(0, 2, n),
    )


def assert_events(events: np.ndarray, *, t, x, y, p) -> None:
    """``events`` hold exactly these columns (compared one by one: a failure names the column)."""
    for name, expected in (("t", t), ("x", x), ("y", y), ("p", p)):
        np.testing.assert_array_equal(events[name], expected, err_msg=f"column {name!r}")


def write_random_recording(path, n: int, sensor_size: tuple, seed: int = 0, t_max: int = 1_000_000):
    """Write ``random_events`` on a ``(W, H, P)`` sensor to ``path`` (its suffix picks the format);
    returns the events."""
    from sdt3_event.events.io import write_events

    events = random_events(n, sensor_size[0], sensor_size[1], seed, t_max)
    write_events(path, events, sensor_size)
    return events


def window_key(window) -> tuple[int, int, int, int]:
    """What makes two windows the same window: ``(index, start_us, end_us, n_events)``."""
    return (window.index, window.start_us, window.end_us, window.n_events)
