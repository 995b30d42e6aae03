"""HARDVS (Wang et al., 2022): 300 human activities recorded with a DAVIS346 (346x260).

Tonic has no HARDVS class. Two released forms are supported:

- :class:`HARDVS`: the "Compact Event file" release, one ``.npz`` of events per recording (read
  with :func:`sdt3_event.events.io.read_events`), for the Tonic-style event pipeline::

      <root>/train_label.txt  val_label.txt  test_label.txt      (or <root>/list/*_label.txt)
      <root>/action_001/dvSave-2021_10_15_19_18_02.npz

- :class:`HARDVSFrames`: the "Event Images" release (PNG ``rawframes``) that SDT-V3 trained on,
  with the official 2-channel thresholding but without the official loader's defects (spec §7
  #17): frames are read in sorted order, a training clip is flipped once (never per frame),
  evaluation takes the deterministic centre clip, and the validation split is its own list::

      <root>/rawframes/action_001/<recording>/<sub-folder>/*.png

Each list line is ``relpath [n_frames] label`` (label ``0..299``, whitespace separated); with only
a path the label comes from its ``action_XXX`` folder (``XXX - 1``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sdt3_event.datasets._common import EventDataset, SplitDataset

from sdt3_event.events.schema import EventFormatError

logger = logging.getLogger(__name__)

N_CLASSES = 300
SENSOR_SIZE = (346, 260, 2)
CLASSES = [f"action_{i:03d}" for i in range(1, N_CLASSES + 1)]
_SPLITS = ("train", "val", "test")
_ACTION_RE = re.compile(r"action_(\d{3})")


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def find_split_file(root: str | os.PathLike, split: str) -> Path:
    """The ``<split>_label.txt`` list under ``root`` or ``root/list``.

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: no list file; the message names every place it looked.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = Path(root)
    candidates = [root / f"{split}_label.txt", root / "list" / f"{split}_label.txt"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"HARDVS split file not found: looked for {', '.join(str(c) for c in candidates)}; "
        "download the official lists with `sdt3-event data download hardvs`"
    )


def parse_split_file(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(relpath, label)`` for every line of a HARDVS list file.

    Raises:
        ValueError: a malformed line or a label outside ``0..299`` (names file and line).
    """
    path = Path(path)
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        rel = fields[0]
        try:
            if len(fields) in (2, 3):
                label = int(fields[-1])
            elif len(fields) == 1:
                m = _ACTION_RE.search(rel)
                if m is None:
                    raise ValueError("no label and no action_XXX folder in the path")
                label = int(m.group(1)) - 1
            else:
                raise ValueError(f"expected 'relpath [n_frames] label', got {len(fields)} fields")
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: malformed line {line!r} ({exc})") from exc
        if not 0 <= label < N_CLASSES:
            raise ValueError(f"{path}:{lineno}: label {label} outside 0..{N_CLASSES - 1}")
        entries.append((rel, label))
    if not entries:
        raise ValueError(f"{path}: the list is empty")
    return entries


class HARDVS(SplitDataset):
    """HARDVS events (``.npz`` per recording), Tonic style: ``dataset[i] -> (events, label)``.

    Args:
        root: folder with the list files and the ``action_XXX`` folders.
        split: ``"train"``, ``"val"`` or ``"test"`` (the official lists).
        transform: applied to the events.
        target_transform: applied to the label.

    Raises:
        FileNotFoundError: the split list, or a recording it names, is missing.
        ValueError: a malformed list.
    """

    sensor_size = SENSOR_SIZE
    classes = CLASSES

    def scan(self) -> None:
        self.list_file = find_split_file(self.root, self.split)
        self.data: list[str] = []
        self.targets: list[int] = []
        missing = []
        for rel, label in parse_split_file(self.list_file):
            p = self.root / rel
            if p.suffix != ".npz":
                p = p.with_name(p.name + ".npz")
            if not p.is_file():
                missing.append(p)
            self.data.append(str(p))
            self.targets.append(label)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} recordings listed in {self.list_file} are missing, e.g. "
                f"{missing[0]}; extract the HARDVS event archive into {self.root}"
            )

    def load(self, index: int) -> np.ndarray:
        from sdt3_event.events.io import read_events

        return read_events(self.data[index], self.sensor_size)[0]

    DESCRIBE = ("split", "n")

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root)}


@dataclass(frozen=True)
class RawFrameConfig:
    """How a HARDVS PNG clip becomes ``(T, 2, size, size)`` (the SDT-V3 recipe, spec §5.1).

    Decoding and resizing use OpenCV (grey conversion with the same 0.299/0.587/0.114 weights as
    PIL's ``convert("L")``; ``INTER_CUBIC`` where the official loader used PIL's bicubic), so grey
    levels can differ from the official pipeline by a level or so near edges; the thresholds and
    the crop geometry (short side 256, centre 224) are the official ones.

    Attributes:
        n_time_bins: ``T`` frames per clip.
        resize: short side after resizing (bicubic).
        size: centre crop side.
        low: ``ch0 = g < low``.
        mid: ``ch1 = mid < g <= high`` (grey levels ``g`` in ``[0, 1]``).
        high: see ``mid``.
    """

    n_time_bins: int = 8
    resize: int = 256
    size: int = 224
    low: float = 0.12
    mid: float = 0.3
    high: float = 0.78


def threshold_frame(gray: np.ndarray, cfg: RawFrameConfig) -> np.ndarray:
    """One uint8 grey frame -> the 2 binary channels ``(2, H, W)`` float32."""
    g = gray.astype(np.float32) / 255.0
    out = np.empty((2, *g.shape), np.float32)  # (P, H, W)
    out[0] = g < cfg.low
    out[1] = (g > cfg.mid) & (g <= cfg.high)
    return out


def _resize_crop(gray: np.ndarray, cfg: RawFrameConfig) -> np.ndarray:
    import cv2

    h, w = gray.shape
    if h <= w:
        new_h, new_w = cfg.resize, int(cfg.resize * w / h)
    else:
        new_h, new_w = int(cfg.resize * h / w), cfg.resize
    if (new_h, new_w) != (h, w):
        gray = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    if new_h < cfg.size or new_w < cfg.size:
        raise ValueError(f"resize {cfg.resize} is smaller than the crop {cfg.size}")
    top = int(round((new_h - cfg.size) / 2.0))
    left = int(round((new_w - cfg.size) / 2.0))
    return gray[top : top + cfg.size, left : left + cfg.size]


class HARDVSFrames(EventDataset):
    """HARDVS PNG ``rawframes`` as SDT-V3 used them: ``dataset[i] -> (frames (T, 2, S, S), label)``.

    Every sub-folder of a listed recording folder is one sample (a recording folder that holds
    PNGs itself is one sample). Frames are sorted naturally (``img_2`` before ``img_10``). A clip
    of ``n >= T`` frames starts at a random offset when training and at the centre otherwise; a
    shorter clip keeps its ``n`` frames followed by ``T - n`` empty frames (counted in
    ``n_short_clips``, logged at debug level). Training flips the whole clip horizontally with
    probability 0.5.

    Args:
        root: folder with the list files.
        split: ``"train"``, ``"val"`` or ``"test"``.
        frames_root: the ``rawframes`` folder (default ``root/rawframes``).
        config: frame geometry and thresholds.
        train: random clip offset and flip (default: ``split == "train"``).
        transform: applied to the frames tensor.
        target_transform: applied to the label.

    Raises:
        FileNotFoundError: the list, the frames root or a listed recording folder is missing.
        ValueError: a malformed list or a listed folder without PNGs.
    """

    sensor_size = SENSOR_SIZE
    classes = CLASSES
    dtype = ordering = None  # samples are frame tensors, not events

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        frames_root: str | os.PathLike | None = None,
        config: RawFrameConfig | None = None,
        train: bool | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.frames_root = Path(frames_root) if frames_root else self.root / "rawframes"
        self.config = config or RawFrameConfig()
        self.train = split == "train" if train is None else bool(train)
        self.transform = transform
        self.target_transform = target_transform
        self.list_file = find_split_file(self.root, split)
        if not self.frames_root.is_dir():
            raise FileNotFoundError(
                f"HARDVS rawframes folder {self.frames_root} not found; pass frames_root="
            )
        self.data: list[str] = []
        self.targets: list[int] = []
        self.n_short_clips = 0
        for rel, label in parse_split_file(self.list_file):
            rec = self.frames_root / rel
            if not rec.is_dir():
                raise FileNotFoundError(f"{rec} (listed in {self.list_file}) does not exist")
            if any(rec.glob("*.png")):
                samples = [rec]
            else:
                samples = sorted(p for p in rec.iterdir() if p.is_dir())
            if not samples:
                raise ValueError(f"{rec} (listed in {self.list_file}) holds no PNG frames")
            self.data += [str(s) for s in samples]
            self.targets += [label] * len(samples)

    def frame_files(self, index: int) -> list[Path]:
        """The sorted PNG files of sample ``index``.

        Raises:
            ValueError: the folder has no PNGs.
        """
        files = sorted(Path(self.data[index]).glob("*.png"), key=_natural_key)
        if not files:
            raise ValueError(f"{self.data[index]} holds no PNG frames")
        return files

    def clip_files(self, index: int) -> list[Path]:
        """The (at most ``T``) frame files of the clip sample ``index`` uses."""
        files = self.frame_files(index)
        n, t = len(files), self.config.n_time_bins
        if n <= t:
            return files
        start = int(self.rng.integers(0, n - t + 1)) if self.train else (n - t) // 2
        return files[start : start + t]

    def load(self, index: int):
        """The ``(T, 2, size, size)`` float frames of clip ``index`` (random start/flip in train)."""
        import cv2
        import torch

        cfg = self.config
        files = self.clip_files(index)
        frames = np.zeros((cfg.n_time_bins, 2, cfg.size, cfg.size), np.float32)  # (T, P, H, W)
        if len(files) < cfg.n_time_bins:
            self.n_short_clips += 1
            logger.debug("%s: %d frames < T=%d", self.data[index], len(files), cfg.n_time_bins)
        flip = self.train and self.rng.uniform() < 0.5
        for k, f in enumerate(files):
            gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise EventFormatError(f"{f}: not a readable image (corrupt or truncated PNG)")
            gray = _resize_crop(gray, cfg)
            if flip:
                gray = gray[:, ::-1]
            frames[k] = threshold_frame(gray, cfg)
        return torch.from_numpy(frames)

    DESCRIBE = ("split", "n", "train")
