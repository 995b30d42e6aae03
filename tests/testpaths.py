"""Paths shared by the tests (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RECORDINGS = SHARED / "data" / "recordings"
SDT_KEYS = SHARED / "reference" / "sdt_keys"
