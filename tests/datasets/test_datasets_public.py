"""CIFAR10-DVS, DVS Gesture, HARDVS (events and PNG frames) and EventFolder on fake on-disk layouts.

Nothing is downloaded: archives are built in tmp_path and "downloaded" through file:// URLs.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from sdt3_event.datasets import download as dl
from sdt3_event.datasets.cifar10dvs import CIFAR10DVS, stratified_split
from sdt3_event.datasets.dvsgesture import DVSGesture
from sdt3_event.datasets.folder import EventFolder
from sdt3_event.datasets.hardvs import HARDVS, HARDVSFrames, RawFrameConfig, parse_split_file
from sdt3_event.datasets.synthetic import generate_gesture

from sdt3_event.events.aedat4 import write_aedat4
from sdt3_event.events.io import write_events
from sdt3_event.events.schema import EVENT_DTYPE, EventFormatError

CIFAR_CLASSES = list(CIFAR10DVS.classes)


def _events(seed, sensor=(128, 128, 2), n_label=0):
    return generate_gesture(n_label, np.random.default_rng(seed), sensor, 50_000)


def _use_local_resources(monkeypatch, name, files: dict):
    """Point a data set's resources at local files (file:// URLs, real md5 sums)."""
    info = dl.DATASETS[name]
    resources = tuple(
        dataclasses.replace(r, url=files[r.filename].as_uri(), md5=dl.file_md5(files[r.filename]))
        for r in info.resources
    )
    monkeypatch.setitem(dl.DATASETS, name, dataclasses.replace(info, resources=resources))


# ------------------------------------------------------------------------------- CIFAR10-DVS
@pytest.fixture(scope="module")
def cifar_archive(tmp_path_factory):
    """A CIFAR10DVS.zip shaped like Tonic's: ten <class>.zip, each with <class>/*.aedat4."""
    src = tmp_path_factory.mktemp("cifar_src")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as oz:
        for c, name in enumerate(CIFAR_CLASSES):
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as iz:
                for i in range(10):
                    f = src / f"cifar10_{name}_{i}.aedat4"
                    write_aedat4(f, _events(100 * c + i, n_label=c), (128, 128, 2))
                    iz.write(f, f"{name}/{f.name}")
            oz.writestr(f"{name}.zip", inner.getvalue())
    path = src / "CIFAR10DVS.zip"
    path.write_bytes(outer.getvalue())
    return path


@pytest.fixture(scope="module")
def cifar_root(cifar_archive, tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_root")
    folder = root / "CIFAR10DVS"
    folder.mkdir()
    (folder / "CIFAR10DVS.zip").write_bytes(cifar_archive.read_bytes())
    dl._extract_resource(dl.DATASETS["cifar10dvs"], dl.DATASETS["cifar10dvs"].resources[0], folder)
    return root


def test_cifar10dvs_download_verify_extract(cifar_archive, tmp_path, monkeypatch):
    _use_local_resources(monkeypatch, "cifar10dvs", {"CIFAR10DVS.zip": cifar_archive})
    seen = []
    folder = dl.download_dataset(
        "cifar10dvs", tmp_path, progress_factory=lambda r: lambda done, total: seen.append(done)
    )
    assert seen and seen[-1] == cifar_archive.stat().st_size
    assert len(list(folder.glob("*/*.aedat4"))) == 100
    assert all(s.ok for s in dl.verify("cifar10dvs", tmp_path))
    ds = CIFAR10DVS(tmp_path, split="all")
    assert len(ds) == 100


def test_download_rejects_wrong_checksum(cifar_archive, tmp_path):
    with pytest.raises(dl.ChecksumError, match="does not match"):
        dl.download_url(cifar_archive.as_uri(), tmp_path / "x.zip", md5="0" * 32)
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()
    bad = dl.verify("cifar10dvs", tmp_path)
    assert not bad[0].ok and bad[0].reason == "missing"


def test_extract_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        dl.extract_archive(archive, tmp_path / "out")
    (tmp_path / "junk.bin").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="junk.bin"):
        dl.extract_archive(tmp_path / "junk.bin", tmp_path / "out")


def test_cifar10dvs_stratified_deterministic_split(cifar_root):
    train = CIFAR10DVS(cifar_root, split="train", test_fraction=0.2, seed=1)
    test = CIFAR10DVS(cifar_root, split="test", test_fraction=0.2, seed=1)
    assert len(train) == 80 and len(test) == 20
    assert np.bincount(test.targets).tolist() == [2] * 10
    assert not set(train.data) & set(test.data)
    again = CIFAR10DVS(cifar_root, split="test", test_fraction=0.2, seed=1)
    assert again.data == test.data
    other = CIFAR10DVS(cifar_root, split="test", test_fraction=0.2, seed=2)
    assert other.data != test.data
    events, label = test[3]
    assert events.dtype == EVENT_DTYPE and len(events) > 0 and label == test.targets[3]
    assert test.class_names[0] == "airplane"


def test_stratified_split_properties():
    targets = np.repeat(np.arange(3), [10, 20, 5])
    tr, te = stratified_split(targets, 0.2, seed=0)
    assert np.bincount(targets[te]).tolist() == [2, 4, 1]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(35))
    with pytest.raises(ValueError):
        stratified_split(targets, 1.0, 0)


def test_cifar10dvs_errors_name_the_problem(tmp_path, cifar_root):
    with pytest.raises(FileNotFoundError, match="data download cifar10dvs"):
        CIFAR10DVS(tmp_path / "nothing")
    folder = tmp_path / "CIFAR10DVS"
    for name in CIFAR_CLASSES:
        (folder / name).mkdir(parents=True)
    with pytest.raises(ValueError, match="airplane"):
        CIFAR10DVS(tmp_path)
    with pytest.raises(ValueError, match="split"):
        CIFAR10DVS(cifar_root, split="val")


# ------------------------------------------------------------------------------- DVS Gesture
def _gesture_tar(path, folder, users):
    with tarfile.open(path, "w:gz") as tf:
        for user, light in users:
            for label in (0, 3, 10):
                ev = _events(user * 100 + label)
                arr = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1).astype(
                    np.float64
                )
                buf = io.BytesIO()
                np.save(buf, arr)
                info = tarfile.TarInfo(f"{folder}/user{user:02d}_{light}/{label}.npy")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))


def test_dvsgesture_layout_metadata_and_download(tmp_path, monkeypatch):
    train_tar, test_tar = tmp_path / "ibmGestureTrain.tar.gz", tmp_path / "ibmGestureTest.tar.gz"
    _gesture_tar(train_tar, "ibmGestureTrain", [(1, "fluorescent"), (2, "led")])
    _gesture_tar(test_tar, "ibmGestureTest", [(24, "natural")])
    _use_local_resources(
        monkeypatch,
        "dvsgesture",
        {"ibmGestureTrain.tar.gz": train_tar, "ibmGestureTest.tar.gz": test_tar},
    )
    root = tmp_path / "data"
    dl.download_dataset("dvsgesture", root)
    train = DVSGesture(root, train=True)
    test = DVSGesture(root, train=False)
    assert len(train) == 6 and len(test) == 3
    assert train.users == [1, 1, 1, 2, 2, 2] and train.lighting[3] == "led"
    assert train.targets[:3] == [0, 3, 10]
    assert test.metadata(0)["user"] == 24 and test.metadata(0)["lighting"] == "natural"
    events, label = train[1]
    ref = _events(1 * 100 + 3)
    assert label == 3 and events.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(events["t"], ref["t"] // 1000 * 1000)  # ms -> µs, like Tonic
    np.testing.assert_array_equal(np.sort(events["x"]), np.sort(ref["x"]))


def test_dvsgesture_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ibmGestureTrain"):
        DVSGesture(tmp_path)
    bad = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    bad.mkdir(parents=True)
    (bad / "0.npy").write_bytes(b"garbage")
    ds = DVSGesture(tmp_path)
    with pytest.raises(EventFormatError, match="0.npy"):
        ds[0]
    (bad / "12.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="12.npy"):
        DVSGesture(tmp_path)


# ------------------------------------------------------------------------------- HARDVS
def _hardvs_lists(root, entries_by_split):
    for split, lines in entries_by_split.items():
        (root / f"{split}_label.txt").write_text("\n".join(lines) + "\n")


def test_hardvs_events_form(tmp_path):
    sensor = (346, 260, 2)
    for action, rec in [(1, "dvSave-a"), (1, "dvSave-b"), (300, "dvSave-c")]:
        folder = tmp_path / f"action_{action:03d}"
        folder.mkdir(exist_ok=True)
        write_events(folder / f"{rec}.npz", _events(action, sensor), sensor)
    _hardvs_lists(
        tmp_path,
        {
            "train": ["action_001/dvSave-a 0", "action_300/dvSave-c 299"],
            "val": ["action_001/dvSave-b"],
            "test": ["action_001/dvSave-b 12 0"],
        },
    )
    train = HARDVS(tmp_path, "train")
    assert len(train) == 2 and train.targets == [0, 299]
    events, label = train[1]
    assert label == 299 and events.dtype == EVENT_DTYPE and events["x"].max() < 346
    assert HARDVS(tmp_path, "val").targets == [0]
    assert len(train.classes) == 300


def test_hardvs_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_label.txt"):
        HARDVS(tmp_path, "train")
    _hardvs_lists(tmp_path, {"train": ["action_002/rec 1"], "val": ["x y z w"], "test": ["a 301"]})
    with pytest.raises(FileNotFoundError, match="action_002/rec.npz"):
        HARDVS(tmp_path, "train")
    with pytest.raises(ValueError, match="val_label.txt:1"):
        parse_split_file(tmp_path / "val_label.txt")
    with pytest.raises(ValueError, match="outside"):
        parse_split_file(tmp_path / "test_label.txt")
    (tmp_path / "action_002").mkdir()
    (tmp_path / "action_002" / "rec.npz").write_bytes(b"PK\x03\x04 corrupt")
    with pytest.raises(EventFormatError, match="rec.npz"):
        HARDVS(tmp_path, "train")[0]


def _write_pngs(folder, levels, size=(260, 346)):
    import cv2

    folder.mkdir(parents=True)
    for k, level in enumerate(levels):
        img = np.full(size, level, np.uint8)
        img[:, :80] = 255  # a bright band on the left edge (to see flips)
        cv2.imwrite(str(folder / f"img_{k + 1}.png"), img)


def test_hardvs_frames_sorted_centre_clip_and_thresholds(tmp_path):
    # 12 frames whose grey level encodes their index: even -> dark (ch0), odd -> mid (ch1).
    levels = [10 if k % 2 == 0 else 128 for k in range(12)]
    _write_pngs(tmp_path / "rawframes" / "action_005" / "rec1" / "clip0", levels)
    _write_pngs(tmp_path / "rawframes" / "action_005" / "rec1" / "clip1", [10, 128, 10])
    _hardvs_lists(tmp_path, {"val": ["action_005/rec1 12 4"], "train": ["action_005/rec1 12 4"]})
    cfg = RawFrameConfig(n_time_bins=8)
    val = HARDVSFrames(tmp_path, "val", config=cfg)
    assert len(val) == 2 and val.targets == [4, 4]
    # Natural sort: img_2 comes before img_10; the centre clip of 12 frames starts at frame 2.
    names = [p.name for p in val.clip_files(0)]
    assert names == [f"img_{k}.png" for k in range(3, 11)]
    frames, label = val[0]
    assert frames.shape == (8, 2, 224, 224) and frames.dtype == torch.float32 and label == 4
    centre = frames[:, :, 112, 112]
    expected_ch0 = torch.tensor([float(k % 2 == 0) for k in range(2, 10)])
    torch.testing.assert_close(centre[:, 0], expected_ch0)
    torch.testing.assert_close(centre[:, 1], 1 - expected_ch0)
    torch.testing.assert_close(frames, val[0][0])  # evaluation is deterministic
    short, _ = val[1]  # 3 frames < T: the rest stays empty
    assert short[:3].sum() > 0 and short[3:].sum() == 0 and val.n_short_clips == 1


def test_hardvs_frames_flip_is_per_clip(tmp_path):
    _write_pngs(tmp_path / "rawframes" / "action_001" / "r" / "c", [128] * 8)
    _hardvs_lists(tmp_path, {"train": ["action_001/r 8 0"]})
    train = HARDVSFrames(tmp_path, "train", config=RawFrameConfig(n_time_bins=8))
    train.rng = np.random.default_rng(0)
    sides = set()
    for _ in range(12):
        frames, _ = train[0]
        # The bright band (> 0.78, in neither channel) sits on the left or the right of the crop;
        # every frame of a clip must agree.
        left_empty = frames[:, 1, 100, 0] == 0
        assert bool(left_empty.all()) or not bool(left_empty.any())
        sides.add(bool(left_empty.all()))
    assert sides == {True, False}


def test_hardvs_frames_corrupt_png_names_file(tmp_path):
    _write_pngs(tmp_path / "rawframes" / "action_001" / "r" / "c", [128] * 2)
    (tmp_path / "rawframes" / "action_001" / "r" / "c" / "img_3.png").write_bytes(b"\x89PNG broken")
    _hardvs_lists(tmp_path, {"test": ["action_001/r 3 0"]})
    ds = HARDVSFrames(tmp_path, "test", config=RawFrameConfig(n_time_bins=4))
    with pytest.raises(EventFormatError, match="img_3.png"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="rawframes"):
        HARDVSFrames(tmp_path, "test", frames_root=tmp_path / "nope")


# ------------------------------------------------------------------------------- EventFolder
def test_event_folder_mixed_formats(tmp_path):
    sensor = (64, 48, 2)
    (tmp_path / "wave").mkdir()
    (tmp_path / "clap").mkdir()
    write_aedat4(tmp_path / "wave" / "a.aedat4", _events(1, sensor), sensor)
    write_events(tmp_path / "wave" / "b.npz", _events(2, sensor), sensor)
    write_events(tmp_path / "clap" / "c.h5", _events(3, sensor), sensor)
    (tmp_path / "clap" / "notes.txt").write_text("ignored")
    ds = EventFolder(tmp_path, sensor_size=sensor)
    assert ds.classes == ["clap", "wave"] and ds.targets == [0, 1, 1]
    for i in range(3):
        events, label = ds[i]
        assert events.dtype == EVENT_DTYPE and len(events) > 0
    np.testing.assert_array_equal(ds[1][0], _events(1, sensor))


def test_event_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        EventFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        EventFolder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        EventFolder(tmp_path)
    (tmp_path / "empty" / "broken.aedat4").write_bytes(b"#!AER-DAT4.0\r\n garbage")
    ds = EventFolder(tmp_path, sensor_size=(64, 48, 2))
    with pytest.raises(EventFormatError, match="broken.aedat4"):
        ds[0]
    with pytest.raises(EventFormatError, match="broken.aedat4"):
        EventFolder(tmp_path)  # reads the first file for its sensor size


def test_event_folder_splits_and_sensor_size(tmp_path):
    sensor = (32, 24, 2)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            write_events(tmp_path / name / f"{i}.npz", _events(i, sensor), sensor)
    train = EventFolder(tmp_path, split="train")
    test = EventFolder(tmp_path, split="test")
    assert len(train) == 8 and len(test) == 2 and test.targets == [0, 1]
    assert not set(train.data) & set(test.data)
    assert train.sensor_size == sensor  # from the files
    assert len(EventFolder(tmp_path, split="all")) == 10
    # root/<split>/<class>/ layouts are used as they are.
    (tmp_path / "test" / "a").mkdir(parents=True)
    write_events(tmp_path / "test" / "a" / "x.npz", _events(9, sensor), sensor)
    assert EventFolder(tmp_path, split="test").data == [str(tmp_path / "test" / "a" / "x.npz")]
    with pytest.raises(ValueError, match="split"):
        EventFolder(tmp_path, split="dev")


def test_dvsgesture_accepts_split_keyword(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    np.save(folder / "4.npy", np.array([[1, 2, 1, 5.0]]))
    ds = DVSGesture(tmp_path, split="test")
    assert not ds.train and ds.targets == [4]
    events, _ = ds[0]
    assert events["t"].tolist() == [5000] and events["p"].tolist() == [True]
    with pytest.raises(ValueError, match="splits"):
        DVSGesture(tmp_path, split="val")


def test_dvsgesture_raw_cuts_recordings_by_real_label_file(tmp_path, recordings_dir):
    from sdt3_event.datasets.dvsgesture import DVSGestureRaw, parse_gesture_labels

    from sdt3_event.events.schema import make_events

    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    labels = recordings_dir / "dvsgesture_user01_natural_labels.csv"
    (folder / "user01_natural_labels.csv").write_bytes(labels.read_bytes())
    rng = np.random.default_rng(0)
    n = 20_000
    t = np.sort(rng.integers(50_000_000, 180_000_000, n))
    ev = make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.random(n) < 0.5)
    write_events(folder / "user01_natural.aedat", ev)
    (folder / "trials_to_train.txt").write_text("user01_natural.aedat\n")
    ds = DVSGestureRaw(tmp_path, "train")
    rows = parse_gesture_labels(labels)
    assert len(ds) == 12 and ds.targets == [r[0] for r in rows]
    assert ds.targets[:5] == [0, 1, 2, 4, 3] and ds.targets[-1] == 10
    for i in (0, 7, 11):
        events, label = ds[i]
        _, start, end = rows[i]
        inside = (t >= start) & (t < end)
        assert len(events) == int(inside.sum()) > 0
        assert events["t"].min() >= start and events["t"].max() < end
    assert ds.metadata(3)["user"] == 1 and ds.metadata(3)["lighting"] == "natural"
    with pytest.raises(FileNotFoundError, match="trials_to_test.txt"):
        DVSGestureRaw(tmp_path, "test")
    (folder / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,5,9\n")
    with pytest.raises(ValueError, match="user02_led_labels.csv:2"):
        parse_gesture_labels(folder / "user02_led_labels.csv")
