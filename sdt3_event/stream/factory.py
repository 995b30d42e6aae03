"""``open_source(uri)``, the one way to open a live event stream, and ``parse_source``, its parser.

A source is chosen by URI:

=====================  ==========================================================================
``file:PATH``          replay a recording in any format :func:`sdt3_event.events.io.read_events`
                       reads (``?speed=2`` a multiple of recorded speed, ``?speed=0`` as fast as
                       possible, ``?loop=1`` forever)
``tcp://HOST:PORT``    a DV network stream (AEDAT 4.0 over TCP), see :mod:`sdt3_event.stream.network`
``camera:[SERIAL]``    a live iniVation camera through dv-processing, see :mod:`sdt3_event.stream.camera`
``webcam:N``           an ordinary camera turned into events by :mod:`sdt3_event.stream.emulator`
``video:PATH``         a video file turned into events the same way
``synthetic:``         the synthetic gesture generator as an endless live stream (the default)
=====================  ==========================================================================

Options go in the URI's query (``file:rec.aedat4?speed=2&loop=1``) or as keyword arguments of
:func:`open_source`; keyword arguments win. An unknown scheme or option raises and names the valid ones.
:func:`parse_source` is the one parser of this grammar: every command that takes events (``live``,
``monitor``, ``serve``, ``data``) goes through it, and the command-line flags are the same options
spelled the same way on every command (``--sensor WxH`` is ``?sensor=WxH``, ``--sensor-map`` is
``?sensor_map=``, ...). ``sensor_map`` is read by the pipeline, not by the source.

Every source satisfies :class:`~sdt3_event.stream.base.EventSource`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sdt3_event.stream.base import EventSource, parse_sensor_size

SCHEMES = ("file", "tcp", "camera", "webcam", "video", "synthetic")
VALID_SOURCES = "file:PATH, tcp://HOST:PORT, camera:[SERIAL], webcam:N, video:PATH, synthetic:"


def _convert(value: str) -> Any:
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _factory(scheme: str) -> Callable[..., EventSource]:
    if scheme == "file":
        from sdt3_event.stream.local_sources import FileSource

        return FileSource
    if scheme == "synthetic":
        from sdt3_event.stream.local_sources import SyntheticSource

        return SyntheticSource
    if scheme in ("webcam", "video"):
        from sdt3_event.stream.local_sources import VideoSource

        return VideoSource
    if scheme == "tcp":
        from sdt3_event.stream import network

        return network.NetworkSource
    if scheme == "camera":
        from sdt3_event.stream import camera

        return camera.CameraSource
    raise AssertionError(scheme)


def _options_of(factory: Callable[..., Any]) -> list[str]:
    params = inspect.signature(factory).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "uri"]


def valid_options(scheme: str) -> list[str]:
    """The options a ``scheme:`` source takes (its keyword arguments)."""
    return _options_of(_factory(scheme))


def split_uri(uri: str) -> tuple[str, str, dict[str, Any]]:
    """Split a source URI into ``(scheme, target, options)``.

    ``target`` is the path (file, video), ``host:port`` (tcp), the device index (webcam) or the
    serial number (camera). Query values are converted to bool / int / float where they parse.

    Raises:
        ValueError: no or unknown scheme; the message lists the valid ones.
    """
    uri = uri.strip() if isinstance(uri, str) else ""
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        hint = ""
        if uri and not sep and Path(uri).exists():
            hint = f" (to replay this file, use file:{uri})"
        raise ValueError(f"unknown source {uri!r}{hint}; valid sources: {VALID_SOURCES}")
    parts = urlsplit(uri)
    if scheme == "tcp":
        target = parts.netloc
    elif rest.startswith("//"):
        # file:///abs/path or file://relative/path
        target = parts.netloc + parts.path
    else:
        target = parts.path
    options = {k: _convert(v) for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    return scheme, target, options


# options the pipeline reads; the source itself never sees them
PIPELINE_OPTIONS = ("sensor_map",)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: ``scheme``, ``target``, and the options of the URI's query merged with the
    keyword options (keywords win).

    Attributes:
        uri: the URI as given (``file:PATH`` for a bare path).
        scheme / target: see :func:`split_uri`.
        options: the source's own options (for :func:`open_source`).
        sensor_map: the pipeline's sensor mapping, or ``None``.
    """

    uri: str
    scheme: str
    target: str
    options: dict[str, Any]
    sensor_map: str | None = None

    @property
    def sensor_size(self) -> tuple[int, int, int] | None:
        """``(W, H, P)`` from the ``sensor`` option (``P`` defaults to 2), or ``None``."""
        value = self.options.get("sensor")
        if value is None:
            return None
        return parse_sensor_size(value)

    def open(self) -> EventSource:
        """Open the source (see :func:`open_source`)."""
        return open_source(self.uri, **self.options)


def parse_source(uri: str, *, bare_path: bool = False, **options: Any) -> SourceSpec:
    """Parse a source URI and its options, the same way for every command.

    Args:
        uri: a source URI (see :func:`open_source`).
        bare_path: accept a plain file path as ``file:PATH`` (commands whose argument is a file).
        **options: options that override the URI's query (``None`` values are ignored).

    Raises:
        ValueError: unknown scheme or option (naming the valid ones), a bad ``sensor`` size or
            ``sensor_map``.
    """
    from sdt3_event.events.contract import SPATIAL_MODES

    if bare_path and isinstance(uri, str) and uri.partition(":")[0].lower() not in SCHEMES:
        uri = f"file:{uri}"
    scheme, target, query = split_uri(uri)
    merged = {**query, **{k: v for k, v in options.items() if v is not None}}
    sensor_map = merged.pop("sensor_map", None)
    valid_maps = ("auto", *SPATIAL_MODES)
    if sensor_map is not None and sensor_map not in valid_maps:
        raise ValueError(
            f"{uri}: sensor_map must be one of {', '.join(valid_maps)}, got {sensor_map!r}"
        )
    valid = valid_options(scheme)
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(
            f"{uri}: unknown option(s) {unknown} for {scheme}: sources; valid options: {valid}"
        )
    spec = SourceSpec(uri, scheme, target, merged, sensor_map)
    spec.sensor_size  # noqa: B018 (validates the size now, not when the source opens)
    return spec


def open_source(uri: str, **options: Any) -> EventSource:
    """Open an event source by URI.

    Args:
        uri: ``file:PATH``, ``tcp://HOST:PORT``, ``camera:[SERIAL]``, ``webcam:N``,
            ``video:PATH`` or ``synthetic:``, optionally with ``?key=value&...`` options.
        **options: options of the source class (they override the URI's query); ``None`` values
            are ignored, so callers can pass optional CLI flags straight through.

    Returns:
        an object satisfying :class:`EventSource`.

    Raises:
        ValueError: unknown scheme or option (the message lists the valid ones), bad target.
        FileNotFoundError: a ``file:`` / ``video:`` path that does not exist.
        sdt3_event.events.schema.EventFormatError: a file in an unknown or broken format.
        ImportError: an optional dependency of the source (dv-processing for ``camera:``) is missing.
    """
    scheme, target, query = split_uri(uri)
    factory = _factory(scheme)
    merged = {**query, **{k: v for k, v in options.items() if v is not None}}
    for name in PIPELINE_OPTIONS:
        merged.pop(name, None)
    valid = _options_of(factory)
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(
            f"{uri}: unknown option(s) {unknown} for {scheme}: sources; valid options: {valid}"
        )
    if scheme in ("file", "video"):
        if not target:
            raise ValueError(f"{uri}: missing path; write {scheme}:PATH")
        return factory(target, uri=uri, **merged)
    if scheme == "webcam":
        target = target or "0"
        try:
            index = int(target)
        except ValueError:
            raise ValueError(f"{uri}: webcam index must be an integer, e.g. webcam:0") from None
        return factory(index, uri=uri, **merged)
    if scheme == "tcp":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{uri}: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:7777")
        return factory(host, int(port), uri=uri, **merged)
    if scheme == "camera":
        return factory(target or None, uri=uri, **merged)
    if target:
        raise ValueError(f"{uri}: synthetic: takes no target, only options, e.g. synthetic:?seed=1")
    return factory(uri=uri, **merged)
