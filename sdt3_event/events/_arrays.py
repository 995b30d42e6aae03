"""Readers for event arrays stored by numpy/h5py: HARDVS-style ``.npz`` and HDF5 event files.

``.npz`` layout (HARDVS's "compact event files"): one array per field, keys ``t``, ``x``, ``y``,
``p``. Source: SpikingJelly's ``spikingjelly.datasets.hardvs.HARDVS`` loads these files with
``np.load`` into a ``{key: array}`` dict and bins ``events["t"|"x"|"y"|"p"]`` with a 346x260
(``get_H_W() == (260, 346)``) DAVIS346 sensor; SpikingJelly's converters (e.g. CIFAR10-DVS) write
the same four keys. Timestamps are integer microseconds, polarity 0/1 (-1/1 is accepted too).
A single structured array with fields ``t, x, y, p`` (any key) is read as well, and an optional
``sensor_size`` key ``(W, H, P)`` (what :func:`encode_npz` writes) gives the geometry.

HDF5 layouts (h5py):

- a group ``events`` with 1-D datasets ``t``, ``x``, ``y``, ``p`` (also at the file's root);
- a compound dataset ``events`` (or Prophesee's ``CD/events``) with fields ``t``, ``x``, ``y``,
  ``p``; Prophesee's ECF-compressed files need the ``hdf5plugin`` filter, without which the read
  fails with an error that says so.

The geometry comes from a ``sensor_size`` attribute ``(W, H, P)`` or ``width``/``height``
attributes on the events node or the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from sdt3_event.events._assemble import DecodedEvents
from sdt3_event.events.schema import EventFormatError, SensorSize

_FIELDS = ("t", "x", "y", "p")


def _as_int_column(a: np.ndarray, name: str, source: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise EventFormatError(f"{source}: field {name!r} must be 1-D, got shape {a.shape}")
    if a.dtype.kind in "iu":
        return a
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            raise EventFormatError(f"{source}: field {name!r} holds NaN or infinite values")
        if len(a) and (np.abs(a).max() >= 2.0**62):
            raise EventFormatError(f"{source}: field {name!r} overflows int64")
        ints = a.astype(np.int64)
        if not np.array_equal(ints, a):
            unit = " (timestamps must be integer microseconds)" if name == "t" else ""
            raise EventFormatError(f"{source}: field {name!r} holds non-integer values{unit}")
        return ints
    raise EventFormatError(f"{source}: field {name!r} has dtype {a.dtype}, expected integers")


def _polarity(p: np.ndarray, source: str) -> np.ndarray:
    p = _as_int_column(p, "p", source)
    if p.dtype.kind == "i" and len(p) and int(p.min()) < 0:
        bad = (p != -1) & (p != 0) & (p != 1)
    else:
        bad = p > 1
    if bad.any():
        j = int(np.argmax(bad))
        raise EventFormatError(
            f"{source}: polarity must be 0/1 (or -1/1), found {int(p[j])} at event {j}"
        )
    return p > 0


def _sensor_from(value, source: str) -> SensorSize | None:
    if value is None:
        return None
    v = np.asarray(value).ravel()
    if v.dtype.kind not in "iu" or len(v) not in (2, 3) or (v <= 0).any():
        raise EventFormatError(f"{source}: sensor_size {v.tolist()} is not (W, H[, P]) integers")
    return (int(v[0]), int(v[1]), int(v[2]) if len(v) == 3 else 2)


def _columns(fields: dict, source: str, sensor: SensorSize | None) -> DecodedEvents:
    t = _as_int_column(fields["t"], "t", source)
    x = _as_int_column(fields["x"], "x", source)
    y = _as_int_column(fields["y"], "y", source)
    p = _polarity(fields["p"], source)
    return DecodedEvents(t, x, y, p, sensor_size=sensor, ordered=True)


# ------------------------------------------------------------------------------------------ npz
def decode_npz(data: bytes | Path, source: str) -> DecodedEvents:
    """Decode a ``.npz`` event file (see the module docstring for the layouts).

    Raises:
        EventFormatError: not a readable npz archive, missing keys, or fields of the wrong kind.
    """
    try:
        stream = data if isinstance(data, Path) else io.BytesIO(data)
        with np.load(stream, allow_pickle=False) as archive:
            keys = list(archive.files)
            if set(_FIELDS) <= set(keys):
                fields = {k: archive[k] for k in _FIELDS}
            else:
                fields = None
                for k in keys:
                    a = archive[k]
                    if a.dtype.names and set(_FIELDS) <= set(a.dtype.names):
                        fields = {f: a[f] for f in _FIELDS}
                        break
            sensor_raw = archive["sensor_size"] if "sensor_size" in keys else None
    except EventFormatError:
        raise
    except Exception as exc:  # zipfile / zlib / numpy format errors on corrupt archives
        raise EventFormatError(f"{source}: not a readable .npz archive ({exc})") from exc
    if fields is None:
        raise EventFormatError(
            f"{source}: the .npz archive has keys {keys}; expected 't', 'x', 'y', 'p' "
            "(HARDVS layout) or one structured array with those fields"
        )
    return _columns(fields, source, _sensor_from(sensor_raw, source))


def encode_npz(events: np.ndarray, sensor_size: SensorSize | None = None) -> bytes:
    """Write events as a ``.npz`` archive with keys ``t, x, y, p`` (+ ``sensor_size``)."""
    buf = io.BytesIO()
    extra = {} if sensor_size is None else {"sensor_size": np.asarray(sensor_size, np.int64)}
    np.savez(
        buf,
        t=events["t"].astype(np.int64),
        x=events["x"].astype(np.int16),
        y=events["y"].astype(np.int16),
        p=events["p"].astype(np.uint8),
        **extra,
    )
    return buf.getvalue()


# ----------------------------------------------------------------------------------------- HDF5
def _h5_sensor(*nodes, source: str) -> SensorSize | None:
    for node in nodes:
        attrs = node.attrs
        if "sensor_size" in attrs:
            return _sensor_from(attrs["sensor_size"], source)
        if "width" in attrs and "height" in attrs:
            return _sensor_from([attrs["width"], attrs["height"]], source)
    return None


def decode_hdf5(path: Path, source: str) -> DecodedEvents:
    """Decode an HDF5 event file (see the module docstring for the layouts).

    Raises:
        EventFormatError: not readable HDF5, no known events layout, or a missing filter plugin.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            node = None
            for name in ("events", "CD/events"):
                if name in f:
                    node = f[name]
                    break
            if node is None and all(k in f for k in _FIELDS):
                node = f
            if node is None:
                raise EventFormatError(
                    f"{source}: no events in the HDF5 file (top-level keys: {sorted(f.keys())}); "
                    "expected a group 'events' with datasets t/x/y/p or a compound dataset "
                    "'events' with fields t/x/y/p"
                )
            sensor = _h5_sensor(node, f, source=source)
            if isinstance(node, h5py.Dataset):
                names = node.dtype.names or ()
                if not set(_FIELDS) <= set(names):
                    raise EventFormatError(
                        f"{source}: dataset {node.name!r} has fields {names}; expected t, x, y, p"
                    )
                arr = node[()]
                fields = {k: arr[k] for k in _FIELDS}
            else:
                missing = [k for k in _FIELDS if k not in node]
                if missing:
                    raise EventFormatError(
                        f"{source}: group {node.name!r} lacks datasets {missing}"
                    )
                fields = {}
                for k in _FIELDS:
                    ds = node[k]
                    if not isinstance(ds, h5py.Dataset):
                        raise EventFormatError(f"{source}: {ds.name!r} is not a dataset")
                    fields[k] = ds[()]
    except EventFormatError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError/TypeError on corrupt files
        hint = ""
        if "filter" in str(exc).lower() or "plugin" in str(exc).lower():
            hint = (
                "; a compression filter is missing (Prophesee ECF needs `pip install hdf5plugin`)"
            )
        raise EventFormatError(f"{source}: cannot read the HDF5 events ({exc}){hint}") from exc
    return _columns(fields, source, sensor)


def encode_hdf5(
    path: Path, events: np.ndarray, sensor_size: SensorSize | None = None, *, compound=False
) -> None:
    """Write events to HDF5: a group ``events`` with ``t, x, y, p`` datasets (or, with
    ``compound=True``, one compound dataset ``events``); ``sensor_size`` as an attribute."""
    import h5py

    with h5py.File(path, "w") as f:
        if compound:
            node = f.create_dataset("events", data=events)
        else:
            node = f.create_group("events")
            node.create_dataset("t", data=events["t"].astype(np.int64))
            node.create_dataset("x", data=events["x"].astype(np.int16))
            node.create_dataset("y", data=events["y"].astype(np.int16))
            node.create_dataset("p", data=events["p"].astype(np.uint8))
        if sensor_size is not None:
            node.attrs["sensor_size"] = np.asarray(sensor_size, np.int64)
