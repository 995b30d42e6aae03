"""The data contract: how events become model input, stored inside every checkpoint.

Training, evaluation and live inference all build their event -> frame transform from the same
:class:`DataContract` (see :func:`sdt3_event.events.transforms.build_frame_transform`), so live
preprocessing cannot drift from what the model was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SPATIAL_MODES = ("resize", "letterbox", "center_crop", "pad", "crop_or_pad")
REPRESENTATIONS = ("count", "binary", "voxel", "time_surface")


class RepresentationMismatchError(ValueError):
    """Input of another representation than the one a model was trained on."""


def auto_spatial(sensor_wh: tuple[int, int], input_size: tuple[int, int]) -> str:
    """``"resize"`` when a ``W x H`` sensor has the aspect ratio of ``input_size`` ``(H, W)``,
    else ``"letterbox"`` (which keeps the aspect ratio instead of squashing)."""
    w, h = int(sensor_wh[0]), int(sensor_wh[1])
    return "resize" if w * int(input_size[0]) == h * int(input_size[1]) else "letterbox"


@dataclass(frozen=True)
class DataContract:
    """What a model expects from events.

    Attributes:
        sensor_size: ``(W, H, P)`` of the recordings the model was trained on.
        input_size: ``(H, W)`` of the frames the model sees after the spatial mapping.
        n_time_bins: ``T``, the number of frames per sample.
        window_us: duration of one sample in microseconds; ``None`` means the whole recording
            (clip) is split into ``n_time_bins`` bins.
        representation: ``"count"`` (events per pixel, per polarity), ``"binary"`` (any event),
            ``"voxel"`` (one signed channel, bilinear in time, as Tonic's ``ToVoxelGrid``) or
            ``"time_surface"`` (per polarity, ``exp(-age / tau_us)`` at each bin's end, as
            Tonic's ``ToTimesurface``); see :mod:`sdt3_event.events.representations`.
        clamp: clip counts to ``[0, clamp]`` (the spike level ``D``); ``None`` keeps raw counts.
            Count and binary frames only.
        spatial: how the sensor maps onto ``input_size``: one of ``SPATIAL_MODES``.
        class_names: label names in class-index order.
        filters: event filters applied to each window before the spatial mapping, as a spec
            string (``"ba:2000,roi:0,0,320,240"``, see :mod:`sdt3_event.events.filters`).
        tau_us: the time surface's decay constant (µs); ``None``: one bin's length.
    """

    sensor_size: tuple[int, int, int]
    input_size: tuple[int, int]
    n_time_bins: int
    window_us: int | None = None
    representation: str = "count"
    clamp: int | None = None
    spatial: str = "resize"
    class_names: tuple[str, ...] = ()
    filters: str = ""
    tau_us: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.sensor_size) != 3 or min(self.sensor_size) <= 0:
            raise ValueError(f"sensor_size must be (W, H, P) > 0, got {self.sensor_size}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"input_size must be (H, W) > 0, got {self.input_size}")
        if self.n_time_bins < 1:
            raise ValueError(f"n_time_bins must be >= 1, got {self.n_time_bins}")
        if self.window_us is not None and self.window_us <= 0:
            raise ValueError(f"window_us must be > 0 or None, got {self.window_us}")
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {REPRESENTATIONS}, got {self.representation!r}"
            )
        if self.spatial not in SPATIAL_MODES:
            raise ValueError(f"spatial must be one of {SPATIAL_MODES}, got {self.spatial!r}")
        if self.clamp is not None and self.clamp < 1:
            raise ValueError(f"clamp must be >= 1 or None, got {self.clamp}")
        self._check_representation()

    def _check_representation(self) -> None:
        from sdt3_event.events.filters import format_filters, parse_filters

        object.__setattr__(self, "filters", format_filters(parse_filters(self.filters or "")))
        if self.representation in ("voxel", "time_surface") and self.clamp is not None:
            raise ValueError(f"clamp applies to count frames, not to {self.representation!r}")
        if self.representation == "voxel" and self.sensor_size[2] != 2:
            raise ValueError("representation 'voxel' needs a sensor with P = 2 (signed polarity)")
        if self.tau_us is not None and (self.representation != "time_surface" or self.tau_us <= 0):
            raise ValueError(
                f"tau_us must be > 0 and goes with representation 'time_surface', got {self.tau_us}"
            )

    def with_sensor(self, sensor_size: tuple[int, ...], spatial: str | None = None) -> DataContract:
        """This contract for a sensor of another size: ``spatial`` (default the contract's own;
        ``"auto"`` = ``resize`` when the aspect ratios agree, else ``letterbox``) maps it onto
        ``input_size``."""
        w, h = int(sensor_size[0]), int(sensor_size[1])
        spatial = spatial or self.spatial
        if spatial == "auto":
            spatial = auto_spatial((w, h), self.input_size)
        return dataclasses.replace(self, sensor_size=(w, h, self.sensor_size[2]), spatial=spatial)

    @property
    def in_chans(self) -> int:
        """``P``, the number of channels the model receives (1 for a voxel grid)."""
        return 1 if self.representation == "voxel" else self.sensor_size[2]

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(T, P, H, W)`` of one sample."""
        return (self.n_time_bins, self.in_chans, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sensor_size"] = list(self.sensor_size)
        d["input_size"] = list(self.input_size)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataContract:
        """Build from a dict (a checkpoint's ``data_contract`` entry, a YAML section).

        Raises:
            ValueError: an unknown key, naming the valid ones.
        """
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(f"unknown data contract keys {unknown}; valid keys: {sorted(valid)}")
        return cls(**d)


def require_representation(trained: DataContract, representation: str, what: str) -> None:
    """Refuse to feed a model input of another representation than it was trained on.

    Args:
        trained: the model's data contract (from its checkpoint).
        representation: the representation about to be used.
        what: the model, for the message (a checkpoint path).

    Raises:
        RepresentationMismatchError: the representations differ.
    """
    if representation != trained.representation:
        raise RepresentationMismatchError(
            f"{what} was trained on {trained.representation!r} input, not {representation!r}; "
            f"set data.representation: {trained.representation}, or use a model trained on "
            f"{representation!r} (or train from scratch)"
        )
