"""Compiled (numba) decode kernels: raw words -> ``EVENT_DTYPE`` records in one pass.

Every kernel is *resumable*: it decodes ``words[pos:]`` into ``out[n:]`` and stops at the end of
the words, before a word whose events would not fit in ``out``, or at the first corrupt word. All
decoder state lives in the int64 array ``st`` (indices below), so a file can be decoded in one call
(:func:`sdt3_event.events.io.read_events`) or block by block in constant memory
(:func:`sdt3_event.events.io.iter_events`) with the same code and the same result.

While writing, each kernel also gathers what validation needs (the first and the number of
timestamp decreases, the coordinate bounds), so the events are never re-read to be validated.
The kernels are compiled on first use and cached on disk (``cache=True``); importing this module
imports numba, so readers import it lazily.
"""

from __future__ import annotations

import numba
import numpy as np

# ---- shared state slots (see new_state)
LAST_T = 0  # t of the last event written (int64 min: none yet)
N_BACK = 1  # events whose t is below the previous event's
MIN_X, MAX_X, MIN_Y, MAX_Y = 2, 3, 4, 5
ERR = 6  # error code (0: none): one of the ERR_* codes below
ERR_AT = 7  # index of the offending word / record in ``words``
ERR_A, ERR_B = 8, 9  # values for the message
N_TOTAL = 10  # events written with this state so far
# ---- format-specific slots
TBASE = 11  # EVT 2.0: the time base (time high << 6, unwrapped); EVT 3.0: time high << 12; -1: none
TH_RAW = 12  # the last raw time-high field
TH_WRAPS = 13  # wraps / loops of the time-high field so far
N_SKIPPED = 14  # events without a time base (EVT 2.0) or words before the first time high (EVT 3.0)
E3_LOW = 15  # EVT 3.0: the time-low field in force (0 after the high part changed)
E3_ROW = 16  # EVT 3.0: y of the last EVT_ADDR_Y (-1: none, -2: the last row word was an EM row)
E3_BASE_X = 17  # EVT 3.0: the vector base x (-1: none)
E3_BASE_P = 18  # EVT 3.0: the vector base polarity
N_STATE = 19

#: Error codes a kernel leaves in ``st[ERR]``.
ERR_RESERVED = 1  # a reserved word type (ERR_A: the type)
ERR_TIME_BACK = 2  # the time base goes backwards (ERR_A -> ERR_B, in us)
ERR_POLARITY = 3  # a DAT polarity field above 1 (ERR_A: the field)


def _fresh_state() -> np.ndarray:
    st = np.zeros(N_STATE, np.int64)
    st[LAST_T] = np.iinfo(np.int64).min
    st[MIN_X] = st[MIN_Y] = np.iinfo(np.int64).max
    st[MAX_X] = st[MAX_Y] = np.iinfo(np.int64).min
    st[TBASE] = -1
    st[E3_ROW] = -1
    st[E3_BASE_X] = -1
    return st


_FRESH_STATE = _fresh_state()


def new_state() -> np.ndarray:
    """A fresh decoder state (nothing decoded yet): a copy of one built at import."""
    return _FRESH_STATE.copy()


@numba.njit(cache=True, nogil=True, inline="always")
def _put(out, n, st, t, x, y, p):
    e = out[n]
    e.t = t
    e.x = x
    e.y = y
    e.p = p
    if t < st[LAST_T]:
        st[N_BACK] += 1
    st[LAST_T] = t
    if x < st[MIN_X]:
        st[MIN_X] = x
    if x > st[MAX_X]:
        st[MAX_X] = x
    if y < st[MIN_Y]:
        st[MIN_Y] = y
    if y > st[MAX_Y]:
        st[MAX_Y] = y


@numba.njit(cache=True, nogil=True)
def evt2(words, pos, st, out, n):
    """Prophesee EVT 2.0 (32-bit words). Returns ``(pos, n)``; see the module docstring."""
    cap = out.shape[0]
    n0 = n
    tbase = st[TBASE]
    th_raw = st[TH_RAW]
    wraps = st[TH_WRAPS]
    while pos < words.shape[0]:
        w = np.int64(words[pos])
        kind = w >> 28
        if kind <= 1:
            if tbase < 0:
                st[N_SKIPPED] += 1
            else:
                if n >= cap:
                    break
                _put(out, n, st, tbase | ((w >> 22) & 0x3F), (w >> 11) & 0x7FF, w & 0x7FF, kind)
                n += 1
        elif kind == 8:
            raw = w & 0x0FFFFFFF
            if tbase >= 0 and raw < th_raw:
                if raw - th_raw < -(1 << 27):
                    wraps += 1
                else:
                    st[ERR], st[ERR_AT] = ERR_TIME_BACK, pos
                    st[ERR_A], st[ERR_B] = th_raw << 6, raw << 6
                    break
            th_raw = raw
            tbase = ((wraps << 28) + raw) << 6
        elif kind == 10 or kind >= 14:
            pass  # external trigger, OTHERS, CONTINUED: no CD event
        else:
            st[ERR], st[ERR_AT], st[ERR_A] = ERR_RESERVED, pos, kind
            break
        pos += 1
    st[TBASE] = tbase
    st[TH_RAW] = th_raw
    st[TH_WRAPS] = wraps
    st[N_TOTAL] += n - n0
    return pos, n


@numba.njit(cache=True, nogil=True)
def evt3(words, pos, st, out, n):
    """Prophesee EVT 3.0 (16-bit stateful words). Returns ``(pos, n)``.

    EVT_ADDR_Y (0) sets the row and marks what follows as CD events (1: EM row, skipped);
    EVT_ADDR_X (2) is one event; VECT_BASE_X (3) sets a base x and polarity; VECT_12 (4) /
    VECT_8 (5) hold validity bits for ``x = base + bit`` and advance the base by 12 / 8;
    EVT_TIME_LOW (6) sets timestamp bits 11-0; EVT_TIME_HIGH (8) sets bits 23-12 (a change resets
    the low part; a drop by 2048 or more is the 24-bit loop). Words before the first time high are
    skipped; 9, 11 and 12 are reserved.
    """
    cap = out.shape[0]
    n0 = n
    tbase = st[TBASE]
    th_raw = st[TH_RAW]
    loops = st[TH_WRAPS]
    low = st[E3_LOW]
    row = st[E3_ROW]
    base_x = st[E3_BASE_X]
    base_p = st[E3_BASE_P]
    # Branches in order of frequency. ``row`` and ``base_x`` are only set once a time base
    # exists, so the event words need no separate "time base yet?" test.
    while pos < words.shape[0]:
        w = np.int64(words[pos])
        kind = w >> 12
        if kind == 2:
            if row >= 0:
                if n >= cap:
                    break
                _put(out, n, st, tbase + low, w & 0x7FF, row, (w >> 11) & 1)
                n += 1
        elif kind == 6:
            low = w & 0x0FFF
        elif kind == 0:
            if tbase >= 0:
                row = w & 0x7FF
            else:
                st[N_SKIPPED] += 1
        elif kind == 8:
            high = w & 0x0FFF
            if tbase >= 0:
                if th_raw >= high + 2048:
                    loops += 1
                elif high < th_raw:
                    st[ERR], st[ERR_AT] = ERR_TIME_BACK, pos
                    st[ERR_A], st[ERR_B] = th_raw << 12, high << 12
                    break
                if high != th_raw:
                    low = 0
            else:
                low = 0
            th_raw = high
            tbase = ((loops << 12) + high) << 12
        elif kind == 4 or kind == 5:
            width = 12 if kind == 4 else 8
            if base_x >= 0:
                if row >= 0:
                    bits = w & (0xFFF if kind == 4 else 0xFF)
                    need = _VECTOR_EVENTS[w]
                    if n + need > cap:
                        break
                    for i in range(width):
                        if (bits >> i) & 1:
                            _put(out, n, st, tbase + low, base_x + i, row, base_p)
                            n += 1
                base_x += width
        elif kind == 3:
            if tbase >= 0:
                base_x = w & 0x7FF
                base_p = (w >> 11) & 1
        elif kind == 1:
            row = -2
        elif kind == 9 or kind == 11 or kind == 12:
            st[ERR], st[ERR_AT], st[ERR_A] = ERR_RESERVED, pos, kind
            break
        pos += 1
    st[TBASE] = tbase
    st[TH_RAW] = th_raw
    st[TH_WRAPS] = loops
    st[E3_LOW] = low
    st[E3_ROW] = row
    st[E3_BASE_X] = base_x
    st[E3_BASE_P] = base_p
    st[N_TOTAL] += n - n0
    return pos, n


def _events_per_word() -> np.ndarray:
    """Events each 16-bit EVT 3.0 word can carry: 1 for EVT_ADDR_X, the set validity bits for
    VECT_12 / VECT_8, else 0."""
    w = np.arange(1 << 16)
    kind = w >> 12
    bits = np.where(kind == 4, w & 0xFFF, np.where(kind == 5, w & 0xFF, 0))
    count = np.zeros(1 << 16, np.int64)
    for i in range(12):
        count += (bits >> i) & 1
    count[kind == 2] = 1
    return count.astype(np.uint8)


_VECTOR_EVENTS = _events_per_word()


@numba.njit(cache=True, nogil=True)
def evt3_capacity(words):
    """An upper bound of the events in EVT 3.0 words (single events + vector bits)."""
    total = 0
    for i in range(words.shape[0]):
        total += _VECTOR_EVENTS[words[i]]
    return total


@numba.njit(cache=True, nogil=True)
def dat(words, pos, st, out, n):
    """Prophesee DAT 8-byte records as ``[R, 2]`` uint32 ``(t, data)``. Returns ``(pos, n)``."""
    cap = out.shape[0]
    n0 = n
    while pos < words.shape[0] and n < cap:
        d = np.int64(words[pos, 1])
        pol = d >> 28
        if pol > 1:
            st[ERR], st[ERR_AT], st[ERR_A] = ERR_POLARITY, pos, pol
            break
        _put(out, n, st, np.int64(words[pos, 0]), d & 0x3FFF, (d >> 14) & 0x3FFF, pol)
        n += 1
        pos += 1
    st[N_TOTAL] += n - n0
    return pos, n


@numba.njit(cache=True, nogil=True)
def dv16(rows, st, out, n):
    """AEDAT 4.0 16-byte events (``DV_EVENT_DTYPE``) into ``out[n:]``; any non-zero polarity
    byte is ON. Returns the new ``n``."""
    n0 = n
    for i in range(rows.shape[0]):
        r = rows[i]
        _put(out, n, st, r.t, r.x, r.y, r.on != 0)
        n += 1
    st[N_TOTAL] += n - n0
    return n
