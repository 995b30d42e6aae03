"""``sdt3-event data``: info, preview, verify and download (from file:// URLs) through the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sdt3_event.apps.cli import main
from sdt3_event.datasets import download as dl
from sdt3_event.datasets.synthetic import generate_gesture

from sdt3_event.events.io import write_events


@pytest.fixture
def npz_file(tmp_path):
    ev = generate_gesture("swipe_left", np.random.default_rng(0), (64, 48, 2), 200_000, t0_us=1000)
    return write_events(tmp_path / "rec.npz", ev, (64, 48, 2)), ev


def test_info_reports_counts_and_duration(npz_file, capsys):
    path, ev = npz_file
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"events:      {len(ev):,}" in out
    assert "64x48" in out
    assert f"first t:     {int(ev['t'][0])} us" in out
    assert "Mev/s" in out


def test_info_on_real_recording(recordings_dir, capsys):
    assert main(["data", "info", str(recordings_dir / "davis346_346x260.aedat4")]) == 0
    out = capsys.readouterr().out
    assert "events:      117,667" in out and "346x260" in out and "aedat4" in out


def test_info_errors(tmp_path, capsys):
    bad = tmp_path / "bad.aedat4"
    bad.write_bytes(b"nothing like an aedat file")
    assert main(["data", "info", str(bad)]) == 1
    assert "bad.aedat4" in capsys.readouterr().err


def test_preview_writes_png(npz_file, tmp_path):
    out = tmp_path / "p.png"
    path, _ = npz_file
    assert main(["data", "preview", str(path), "--out", str(out), "--bins", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_download_and_verify_via_cli(tmp_path, monkeypatch, capsys):
    src = tmp_path / "ibmGestureTrain.tar.gz"
    import tarfile

    with tarfile.open(src, "w:gz") as tf:
        f = tmp_path / "0.npy"
        np.save(f, np.zeros((3, 4)))
        tf.add(f, "ibmGestureTrain/user01_led/0.npy")
    info = dl.DATASETS["dvsgesture"]
    res = dataclasses.replace(info.resources[0], url=src.as_uri(), md5=dl.file_md5(src))
    monkeypatch.setitem(dl.DATASETS, "dvsgesture", dataclasses.replace(info, resources=(res,)))
    root = tmp_path / "data"
    assert main(["data", "download", "dvsgesture", "--root", str(root)]) == 0
    assert (root / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "0.npy").is_file()
    assert "ok" in capsys.readouterr().out
    (root / "DVSGesture" / "ibmGestureTrain.tar.gz").write_bytes(b"tampered")
    assert main(["data", "verify", "dvsgesture", "--root", str(root)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["data", "verify", "mnist", "--root", str(root)]) == 2
