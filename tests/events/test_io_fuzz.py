"""Fuzz the readers with mutated real (and written) files: byte flips, truncations, inserted
garbage. Every read either returns valid events or raises EventFormatError; nothing else escapes,
nothing hangs (each call runs under a timeout); the chunked reader agrees with the whole-file one."""

from __future__ import annotations

import concurrent.futures
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testpaths import RECORDINGS

from sdt3_event.events.io import iter_events, read_events, write_events
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError, make_events

TIMEOUT_S = 20.0
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)


def _sample_events(w: int, h: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(7)
    return make_events(
        np.sort(rng.integers(0, 3_000_000, n)),
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        rng.integers(0, 2, n),
    )


def _written(fmt: str, name: str, sensor) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        t_events = _sample_events(sensor[0], sensor[1])
        if fmt == "nmnist":
            t_events["t"] //= 1000
        return write_events(Path(d) / name, t_events, sensor, format=fmt).read_bytes()


# (id, file name for the mutant, source of the original bytes, sensor_size to pass)
REAL = {
    "aedat4": ("m.aedat4", "dvxplorer_320x240.aedat4", None),
    "evt2": ("m.raw", "prophesee_gen3_640x480_evt2.raw", (640, 480, 2)),
    "dat": ("m.dat", "ncars_atis.dat", None),
    "nmnist": ("m.bin", "nmnist_34x34.bin", None),
}
WRITTEN = {
    "aedat3": ("m.aedat", (128, 128, 2)),
    "aedat2": ("m.aedat", (128, 128, 2)),
    "evt3": ("m.raw", (640, 480, 2)),
    "npz": ("m.npz", (346, 260, 2)),
    "hdf5": ("m.h5", (346, 260, 2)),
}


@st.composite
def mutations(draw, size: int):
    """A list of (op, position, payload) edits; positions favour the header."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        hi = max(size - 1, 0)
        pos = draw(st.one_of(st.integers(0, min(hi, 255)), st.integers(0, hi)))
        payload = draw(st.binary(min_size=1, max_size=16))
        ops.append((op, pos, payload))
    return ops


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, payload in ops:
        pos = min(pos, max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[pos] ^= 1 << (payload[0] % 8)
        elif op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = payload
        elif op == "overwrite":
            buf[pos : pos + len(payload)] = payload
    return bytes(buf)


def _read_guarded(path: Path, sensor):
    future = _POOL.submit(read_events, path, sensor)
    try:
        return future.result(timeout=TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"read_events hung for more than {TIMEOUT_S} s on a mutated {path.name}")


def _read_chunked(path: Path, sensor) -> np.ndarray:
    chunks = list(iter_events(path, 700, sensor))
    assert all(0 < len(c) <= 700 for c in chunks)
    return np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)


def _check_mutant(data: bytes, name: str, sensor, ops) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(_mutate(data, ops))
        try:
            events, got_sensor = _read_guarded(path, sensor)
        except EventFormatError as exc:
            assert name in str(exc)
            # the chunked reader rejects the same file (perhaps after some whole chunks)
            with pytest.raises(EventFormatError, match=name):
                _POOL.submit(_read_chunked, path, sensor).result(timeout=TIMEOUT_S)
            return
        # the chunked reader (constant memory) returns exactly the same events
        chunked = _POOL.submit(_read_chunked, path, sensor).result(timeout=TIMEOUT_S)
        np.testing.assert_array_equal(chunked, events)
    # whatever was accepted must satisfy the schema
    assert events.dtype == EVENT_DTYPE and events.ndim == 1
    if len(events):
        assert np.all(np.diff(events["t"]) >= 0) and int(events["t"][0]) >= 0
        assert events["x"].min() >= 0 and events["y"].min() >= 0
        if got_sensor is not None:
            assert events["x"].max() < got_sensor[0] and events["y"].max() < got_sensor[1]


def _real_bytes(file_name: str) -> bytes:
    path = RECORDINGS / file_name
    if not path.is_file():
        pytest.skip(f"real recordings not found at {RECORDINGS} (the ../shared folder is absent)")
    return path.read_bytes()


@pytest.mark.parametrize("fmt", sorted(REAL))
def test_io_fuzz_mutated_real_files(fmt):
    name, file_name, sensor = REAL[fmt]
    data = _real_bytes(file_name)

    @FUZZ
    @given(ops=mutations(len(data)))
    def run(ops):
        _check_mutant(data, name, sensor, ops)

    run()


@pytest.mark.parametrize("fmt", sorted(WRITTEN))
def test_io_fuzz_mutated_written_files(fmt):
    name, sensor = WRITTEN[fmt]
    data = _written(fmt, name, sensor)

    @FUZZ
    @given(ops=mutations(len(data)))
    def run(ops):
        _check_mutant(data, name, sensor, ops)

    run()
