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


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    """The bundled demo checkpoint; it ships in the package, so its absence fails the test."""
    from sdt3_event.assets import DEMO_CHECKPOINT

    assert DEMO_CHECKPOINT.is_file(), f"the bundled demo checkpoint {DEMO_CHECKPOINT} is missing"
    return DEMO_CHECKPOINT


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: tiny models run faster without thread hand-offs
    on a shared 2-core machine. Restores the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
