"""Shared fixtures. Fixtures make data; they never download it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testpaths import RECORDINGS, SDT_KEYS

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    """``../shared/data/recordings``; tests that use it skip when it is absent."""
    if not RECORDINGS.is_dir():
        pytest.skip(f"real recordings not found at {RECORDINGS} (the ../shared folder is absent)")
    return RECORDINGS


@pytest.fixture(scope="session")
def sdt_keys_dir() -> Path:
    """``../shared/reference/sdt_keys``; tests that use it skip when it is absent."""
    if not SDT_KEYS.is_dir():
        pytest.skip(
            f"official key listings not found at {SDT_KEYS} (the ../shared folder is absent)"
        )
    return SDT_KEYS
