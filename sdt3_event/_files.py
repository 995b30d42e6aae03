"""Files written whole or not at all: the one temporary-file helper behind every atomic write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | os.PathLike, prefix: str | None = None) -> tuple[int, Path]:
    """A new temporary file in ``path``'s folder, to be renamed over ``path`` once complete.

    ``tempfile.mkstemp`` creates files readable by their owner only (0600); the file gets the
    permissions an ordinary ``open(path, "w")`` would give (0666 less the umask), so the final file
    does not differ from one written in place.

    Returns:
        ``(fd, temp_path)``: an open descriptor (the caller closes it) and the file's path.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(
        prefix=prefix if prefix is not None else f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.chmod(name, 0o666 & ~_umask())
    return fd, Path(name)
