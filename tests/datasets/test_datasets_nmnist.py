"""NMNIST: the official Train/Test layout on fake files, downloads through file:// URLs, bad input,
and the 1,000 real recordings in ../shared/data/nmnist_small when present."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest
from sdt3_event.datasets import download as dl
from sdt3_event.datasets.nmnist import NMNIST, NMNIST_CLASSES
from testpaths import SHARED

from sdt3_event.events._nmnist import encode_nmnist
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError

NMNIST_SMALL = SHARED / "data" / "nmnist_small"


def _recording(seed: int, n: int = 300, size: int = 34) -> bytes:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 300_000, n))
    ev["x"] = rng.integers(0, size, n)
    ev["y"] = rng.integers(0, size, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return encode_nmnist(ev)


def _layout(root, per_class=5, folders=("Train", "Test")):
    for folder in folders:
        for d in range(10):
            (root / folder / str(d)).mkdir(parents=True)
            for i in range(per_class):
                path = root / folder / str(d) / f"{100 * d + i + 1:05d}.bin"
                path.write_bytes(_recording(100 * d + i))
    return root


def test_nmnist_tonic_interface_on_the_official_layout(tmp_path):
    root = _layout(tmp_path)
    train = NMNIST(root)
    test = NMNIST(root, train=False)
    assert (len(train), len(test)) == (50, 50)
    assert train.sensor_size == (34, 34, 2) and train.classes == list(NMNIST_CLASSES)
    assert train.train and not test.train
    assert train.targets == sorted(train.targets) and set(train.targets) == set(range(10))
    events, label = train[7]
    assert events.dtype == EVENT_DTYPE and label == 1 and len(events) == 300
    assert np.all(np.diff(events["t"]) >= 0)


def test_nmnist_tonic_root_and_first_saccade(tmp_path):
    _layout(tmp_path / "NMNIST", per_class=1, folders=("Train",))
    ds = NMNIST(tmp_path, first_saccade_only=True, transform=len, target_transform=str)
    n, label = ds[3]
    full, _ = NMNIST(tmp_path)[3]
    assert label == "3" and n == int((full["t"] < 100_000).sum()) and 0 < n < len(full)


def test_nmnist_validation_split_is_stratified_disjoint_and_seeded(tmp_path):
    root = _layout(tmp_path, per_class=10, folders=("Train",))
    val = NMNIST(root, split="val", val_fraction=0.2)
    train = NMNIST(root, split="train", val_fraction=0.2)
    assert len(val) == 20 and len(train) == 80
    assert np.bincount(val.targets).tolist() == [2] * 10
    assert not set(val.data) & set(train.data)
    assert NMNIST(root, split="val", val_fraction=0.2).data == val.data
    assert NMNIST(root, split="val", val_fraction=0.2, seed=1).data != val.data
    with pytest.raises(ValueError, match="val_fraction"):
        NMNIST(root, split="val")
    with pytest.raises(ValueError, match="split must be one of"):
        NMNIST(root, split="validation")


def test_nmnist_missing_folder_empty_class_and_foreign_sensor(tmp_path):
    with pytest.raises(FileNotFoundError, match="Train.*download nmnist"):
        NMNIST(tmp_path / "nowhere")
    root = _layout(tmp_path / "a", per_class=2, folders=("Train",))
    with pytest.raises(FileNotFoundError, match="Test"):
        NMNIST(root, train=False)
    for f in (root / "Train" / "4").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"Train/4: no \.bin recordings for digit 4"):
        NMNIST(root)
    (root / "Train" / "4" / "00001.bin").write_bytes(_recording(0, size=64))  # 64x64 sensor
    ds = NMNIST(root)
    with pytest.raises(EventFormatError, match="00001.bin.*outside the 34x34.*34x34 ATIS") as err:
        ds[ds.targets.index(4)]
    assert "drop_out_of_range" not in str(err.value)  # the reader's advice is not for a data set
    (root / "Train" / "4" / "00001.bin").write_bytes(_recording(4)[:-2])  # a cut record
    with pytest.raises(EventFormatError, match="00001.bin: truncated.*official archive") as err:
        ds[ds.targets.index(4)]
    assert "--allow-truncated" not in str(err.value)
    (root / "Train" / "extra").mkdir()
    with pytest.raises(ValueError, match="unknown folders"):
        NMNIST(root)


def test_nmnist_download_verifies_and_extracts(tmp_path, monkeypatch):
    src = _layout(tmp_path / "src", per_class=1)
    archives = {}
    for folder, name in (("Train", "train.zip"), ("Test", "test.zip")):
        archives[name] = tmp_path / name
        with zipfile.ZipFile(archives[name], "w") as zf:
            for f in sorted((src / folder).rglob("*.bin")):
                zf.write(f, f.relative_to(src).as_posix())
    info = dl.DATASETS["nmnist"]
    assert [r.md5 for r in info.resources] == [
        "20959b8e626244a1b502305a9e6e2031",
        "69ca8762b2fe404d9b9bad1103e97832",
    ]
    local = tuple(
        dataclasses.replace(
            r, url=archives[r.filename].as_uri(), md5=dl.file_md5(archives[r.filename])
        )
        for r in info.resources
    )
    monkeypatch.setitem(dl.DATASETS, "nmnist", dataclasses.replace(info, resources=local))
    root = tmp_path / "data"
    ds = NMNIST(root, train=False, download=True)
    assert len(ds) == 10 and (root / "NMNIST" / "Train" / "0").is_dir()
    assert all(s.ok for s in dl.verify("nmnist", root))


@pytest.mark.skipif(not NMNIST_SMALL.is_dir(), reason="../shared/data/nmnist_small is absent")
def test_nmnist_real_recordings():
    ds = NMNIST(NMNIST_SMALL)
    assert len(ds) == 1000
    assert np.bincount(ds.targets).tolist() == [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
    by_index = {int(p.rsplit("/", 1)[1][:5]): t for p, t in zip(ds.data, ds.targets, strict=True)}
    assert [by_index[i] for i in range(1, 6)] == [5, 0, 4, 1, 9]  # MNIST training order
    events, _ = ds[0]
    assert 1000 < len(events) < 10_000 and events["x"].max() < 34 and events["y"].max() < 34
    assert 290_000 < events["t"][-1] - events["t"][0] < 320_000  # three saccades
