"""The compute device, chosen once at the application boundary."""

from __future__ import annotations

import torch


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine or in this torch build.

    Attributes:
        requested: the device as asked for (``"cuda"``, ``"cuda:1"``, ...).
    """

    def __init__(self, requested: str, message: str) -> None:
        super().__init__(message)
        self.requested = requested


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` / ``None`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU.

    Raises:
        DeviceUnavailableError: CUDA asked for but not available, or a CUDA index out of range.
        ValueError: a name torch does not know.
    """
    name = "auto" if name is None else str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                name,
                f"device {name!r} asked for, but CUDA is not available "
                f"(torch {torch.__version__}{' is a CPU build' if torch.version.cuda is None else ''})",
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                name,
                f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist",
            )
    return device
