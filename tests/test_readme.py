"""Every Python block of the README runs as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


# a block that fetches weights needs the network: marked, so it runs only with `-m network`
DOWNLOADS = ("pretrained=True", "hf-hub:", "http://", "https://")


def _param(index: int):
    downloads = any(hint in BLOCKS[index] for hint in DOWNLOADS)
    return pytest.param(index, marks=pytest.mark.network) if downloads else index


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", [_param(i) for i in range(len(BLOCKS))])
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {})


def test_public_names_import_as_the_readme_writes_them():
    import sdt3_event.datasets as datasets

    import sdt3_event.events as events
    from sdt3_event.models import load_pretrained

    assert callable(load_pretrained)
    for name in events.__all__:
        assert getattr(events, name) is not None, name
    for name in ("read_events", "write_events", "to_frames", "EventFormatError", "Letterbox"):
        assert name in events.__all__ and name in dir(events)
    assert "EventFolder" in dir(datasets) and set(datasets.__all__) <= set(dir(datasets))
