"""Sliding windows: exact membership, stride, gaps, late events, the memory bound."""

from __future__ import annotations

import numpy as np
import pytest
from event_support import window_key
from hypothesis import given, settings
from hypothesis import strategies as st

from sdt3_event.events.schema import make_events
from sdt3_event.stream.windowing import SlidingWindower


def _events(t):
    t = np.asarray(t, dtype=np.int64)
    n = len(t)
    return make_events(t, np.arange(n) % 7, np.arange(n) % 5, np.arange(n) % 2)


def _expected(t, window, stride):
    """Brute force: every non-empty complete window on the grid from floor(t0 / stride)."""
    t = np.asarray(t)
    s0 = (int(t[0]) // stride) * stride
    out, k = [], 0
    while s0 + k * stride + window <= t[-1]:
        start = s0 + k * stride
        inside = np.flatnonzero((t >= start) & (t < start + window))
        if len(inside):
            out.append((k, start, start + window, inside.tolist()))
        k += 1
    return out


def _run(ev, window, stride, cuts):
    w = SlidingWindower(window, stride)
    got = []
    for chunk in np.split(ev, cuts):
        got += w.push(chunk)
    return w, got


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 700), min_size=2, max_size=300),
    window=st.integers(1, 2000),
    stride=st.integers(1, 2500),
    cut_seed=st.integers(0, 2**16),
)
def test_windows_hold_exactly_the_events_in_start_to_end(gaps, window, stride, cut_seed):
    t = np.cumsum(gaps) + 1000
    ev = _events(t)
    rng = np.random.default_rng(cut_seed)
    cuts = np.sort(rng.integers(0, len(ev) + 1, rng.integers(0, 10)))
    w, got = _run(ev, window, stride, cuts)
    expected = _expected(t, window, stride)
    assert [(g.index, g.start_us, g.end_us) for g in got] == [e[:3] for e in expected]
    for g, e in zip(got, expected, strict=True):
        # the same events, in order (x carries the event's position modulo 7)
        np.testing.assert_array_equal(g.events["t"], t[e[3]])
        np.testing.assert_array_equal(g.events["x"], np.asarray(e[3]) % 7)
    assert w.stats.windows_out == len(expected)


def test_stride_grid_and_overlap():
    t = np.arange(0, 10_000, 10)  # one event every 10 us
    w, got = _run(_events(t), 1000, 250, [])
    assert [g.start_us for g in got[:4]] == [0, 250, 500, 750]
    assert all(g.n_events == 100 for g in got)
    # the last complete window ends at or before the last event
    assert got[-1].end_us <= t[-1]


def test_gap_in_time_skips_empty_windows_and_counts_them():
    t = np.r_[np.arange(0, 1000, 10), np.arange(1_000_000, 1_002_000, 10)]
    w, got = _run(_events(t), 500, 500, [50, 120])
    assert [g.start_us for g in got] == [0, 500, 1_000_000, 1_000_500, 1_001_000]
    assert w.stats.windows_empty == (1_000_000 - 1000) // 500


def test_stride_longer_than_window_leaves_gaps():
    t = np.arange(0, 10_000, 1)
    w, got = _run(_events(t), 100, 1000, [3333])
    for g in got:
        assert g.events["t"].min() == g.start_us and g.events["t"].max() == g.start_us + 99


def test_late_and_unsorted_events():
    w = SlidingWindower(100)
    (first,) = w.push(_events([0, 50, 120]))
    assert list(first.events["t"]) == [0, 50]
    w.push(_events([130, 110, 125]))  # unsorted: sorted; 110 is older than the newest seen (120)
    assert w.stats.events_late == 1
    out = w.push(_events([250]))
    assert [list(o.events["t"]) for o in out] == [[120, 125, 130]]


def test_arrival_is_that_of_the_chunk_with_the_last_event():
    w = SlidingWindower(100)
    w.push(_events([0, 10]), arrival=1.0)
    w.push(_events([90]), arrival=2.0)
    (win,) = w.push(_events([150]), arrival=3.0)
    assert win.arrival == 2.0


def test_flush_emits_the_pending_window():
    w = SlidingWindower(1000)
    assert w.push(_events([0, 100, 200])) == []
    (win,) = w.flush()
    assert win.n_events == 3 and (win.start_us, win.end_us) == (0, 1000)
    assert w.buffered_events == 0


def test_overflow_drops_whole_windows_and_bounds_memory():
    w = SlidingWindower(1_000_000, 500_000, max_window_events=1000)
    peak = 0
    windows = []
    for k in range(50):  # 50 chunks of 300 events within 10 ms each: far over the bound
        t = k * 10_000 + np.arange(300) * 30
        windows += w.push(_events(t))
        peak = max(peak, w.buffered_events)
    assert peak <= 1000
    assert w.stats.windows_overflow > 0 and w.stats.events_overflow > 0
    assert windows == []  # no window was ever emitted with events missing
    # a quiet stream afterwards windows normally again
    t = 10_000_000 + np.arange(0, 3_000_000, 5_000)
    out = w.push(_events(t))
    assert out and out[0].start_us == 9_500_000 and out[0].n_events == 100
    assert all(o.n_events == 200 for o in out[1:])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        SlidingWindower(0)
    with pytest.raises(ValueError):
        SlidingWindower(100, -1)
    with pytest.raises(TypeError):
        SlidingWindower(100).push(np.zeros(3))


def test_a_clock_that_restarts_starts_the_windows_afresh():
    w = SlidingWindower(100, restart_gap_us=1_000)
    w.push(_events(np.arange(5_000, 10_000, 10)))
    out = w.push(_events(np.arange(0, 300, 10)))  # the server replays from the start
    assert w.stats.restarts == 1 and w.stats.events_late == 0
    assert [o.start_us for o in out] == [0, 100]
    assert all(o.n_events == 10 for o in out)
    w.push(_events([250, 260]))  # a small step back is late, not a restart
    assert w.stats.restarts == 1 and w.stats.events_late == 2


def test_a_watermark_closes_windows_without_waiting_for_the_next_event():
    w = SlidingWindower(100, 50)
    assert w.push(_events([0, 40, 99])) == []
    out = w.advance(100)  # the source promises nothing before t=100 is still coming
    assert [(o.start_us, o.n_events) for o in out] == [(0, 3)]
    assert w.advance(120) == []  # [50, 150) is still open
    out = w.advance(150)
    assert [(o.start_us, o.n_events) for o in out] == [(50, 1)]
    # an event the watermark already promised away is late
    w.push(_events([130]))
    assert w.stats.events_late == 1
    # windows with nothing in them are still skipped
    assert w.advance(10_000) == []


def test_windows_own_their_events_whole_records_and_all():
    """A window is a new contiguous array (byte copies of the chunks): a source may reuse its
    chunk buffers, and every field of every event comes over."""
    ev = _events(np.arange(0, 1000, 3))
    ev["y"], ev["p"] = np.arange(len(ev)) % 11 - 5, np.arange(len(ev)) % 3 == 0
    w = SlidingWindower(300)
    chunks = [c.copy() for c in np.split(ev, [10, 11, 150, 240])]
    got = [win for c in chunks for win in w.push(c)] + w.flush()
    for c in chunks:
        c.fill(0)  # the source overwrites its buffers
    for win in got:
        assert win.events.flags.c_contiguous and win.events.dtype == ev.dtype
        inside = ev[(ev["t"] >= win.start_us) & (ev["t"] < win.end_us)]
        np.testing.assert_array_equal(win.events, inside)
    assert sum(len(win.events) for win in got) == len(ev)


def test_unjoined_windows_keep_the_same_events_as_read_only_parts():
    """``join=False``: the same windows, their events as views of the chunks (no copy)."""
    ev = _events(np.arange(0, 1000, 3))
    ev["x"] = np.arange(len(ev)) % 7
    chunks = np.split(ev, [10, 11, 150, 240])
    joined, unjoined = SlidingWindower(300, 100), SlidingWindower(300, 100, join=False)
    a = [win for c in chunks for win in joined.push(c)] + joined.flush()
    b = [win for c in chunks for win in unjoined.push(c)] + unjoined.flush()
    assert len(a) == len(b) > 5 and joined.stats == unjoined.stats
    for wa, wb in zip(a, b, strict=True):
        assert window_key(wa) == window_key(wb)
        assert wb.events is None and len(wb.parts) >= 1
        assert all(not p.flags.writeable and np.shares_memory(p, ev) for p in wb.parts)
        np.testing.assert_array_equal(np.concatenate(wb.event_parts()), wa.events)
        np.testing.assert_array_equal(wb.event_array(), wa.event_array())
        assert wa.event_parts() == (wa.events,)


@pytest.mark.parametrize("compiled", [True, False])
def test_sortedness_check_sees_a_descent_anywhere(monkeypatch, compiled):
    from sdt3_event.stream import windowing

    if not compiled:
        monkeypatch.setattr(windowing, "_sorted_kernel", lambda: None)
    n = (1 << 16) * 2 + 5  # several numpy blocks
    ev = _events(np.arange(n))
    assert windowing._is_sorted(ev["t"])
    assert windowing._is_sorted(ev["t"][:1]) and windowing._is_sorted(ev["t"][:0])
    for i in (1, 1 << 16, (1 << 16) + 1, n - 1):  # block edges included
        t = ev["t"].copy()
        t[i] = t[i - 1] - 1
        assert not windowing._is_sorted(t)
        assert not windowing._is_sorted(_events(t)["t"])


@pytest.mark.parametrize("compiled", [True, False])
def test_scan_chunk_reports_order_and_bounds(monkeypatch, compiled):
    from sdt3_event.stream import windowing

    if not compiled:
        monkeypatch.setattr(windowing, "_scan_kernel", lambda: None)
    ev = _events(np.arange(50))  # x < 7, y < 5
    assert windowing.scan_chunk(ev, 7, 5) == (True, True)
    assert windowing.scan_chunk(ev[:0], 1, 1) == (True, True)
    assert windowing.scan_chunk(ev, 6, 5) == (True, False)
    assert windowing.scan_chunk(ev, 7, 4) == (True, False)
    neg = ev.copy()
    neg["y"][3] = -1
    assert windowing.scan_chunk(neg, 7, 5) == (True, False)
    back = ev.copy()
    back["t"][-1] = 0
    assert windowing.scan_chunk(back, 7, 5) == (False, True)
    # a chunk said to be unordered is sorted, one said ordered is trusted as it is
    w = SlidingWindower(100)
    w.push(back, ordered=False)
    (win,) = w.flush()
    assert w.stats.events_late == 0 and list(win.events["t"]) == sorted(back["t"])
