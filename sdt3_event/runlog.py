"""A run folder's log, ``metrics.jsonl``: the one writer (training) and the one reader (monitor).

The file holds one JSON object per line. Every line has ``"event"`` in :data:`EVENTS` and
``"time"`` (unix seconds):

- ``start``: ``model``, ``total_epochs``, ``steps_per_epoch`` (+ ``world_size``, ``resumed``)
- ``step``: ``epoch``, ``step``, ``loss``, ``lr``, ``samples_per_s``
- ``eval``: ``epoch``, ``step``, ``loss``, ``acc1``, ``acc5``, ``best_acc1``, ``is_best``
  (+ ``ema_acc1``/``ema_acc5`` with an EMA)
- ``end``: ``best_acc1`` (+ ``status``: ``"finished"``)
- ``failed``: ``reason`` (the error, one line), ``epoch``, ``step``: the run stopped on an error or
  an interrupt; it is the last line of that run

:class:`MetricsLog` appends lines (and optional TensorBoard scalars) during training. While training
runs the file grows, and a reader may catch the writer in the middle of a line; on shared storage the
file may also appear late or be replaced. :class:`MetricsFollower` reads only the bytes added since
its last poll, holds back a half-written last line until it completes, counts and keeps malformed
lines instead of raising, and starts over when the file shrinks (a new run writing to the same
folder). :class:`TrainingProgress` folds the records into what a dashboard shows: curves, epoch
progress, ETA and the best checkpoint so far.

No torch (TensorBoard aside, imported when a writer asks for it) and no Textual at import: the
engine, the monitor and tests all use it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENTS = ("start", "step", "eval", "end", "failed")
METRICS_FILENAME = "metrics.jsonl"


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class MetricsLog:
    """Appends events to ``<run_dir>/metrics.jsonl`` and flushes every line.

    Only the main process writes (``enabled=False`` elsewhere). TensorBoard scalars go to
    ``<run_dir>/tb`` when the ``tensorboard`` package is installed.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILENAME
        self._file = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
            except ImportError:
                log.info("tensorboard is not installed; writing metrics.jsonl only")

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": time.time(), **{k: _finite(v) for k, v in fields.items()}}
        if not self.enabled:
            return record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(fields.get("step", 0))
            for k, v in fields.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "epoch")
                ):
                    self._tb.add_scalar(f"{event}/{k}", v, step)
            self._tb.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


@dataclass(frozen=True)
class MalformedLine:
    """A complete line of ``metrics.jsonl`` that is not a JSON object with an ``"event"`` key.

    Attributes:
        line_no: 1-based line number in the file.
        text: the line, shortened to 200 characters.
        error: why it was rejected.
    """

    line_no: int
    text: str
    error: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.error}: {self.text!r}"


def parse_metrics_line(text: str) -> dict[str, Any]:
    """Parse one line of ``metrics.jsonl``.

    Args:
        text: the line, without its newline.

    Returns:
        The record, a dict with at least an ``"event"`` string.

    Raises:
        ValueError: the line is not JSON, not an object, or has no string ``"event"`` key.
    """
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    if not isinstance(record.get("event"), str):
        raise ValueError('no string "event" key')
    return record


class MetricsFollower:
    """Incrementally read a ``metrics.jsonl`` that may still be written.

    Call :meth:`poll` repeatedly; each call returns the records completed since the previous call.
    A last line without its newline is held back until it completes (or, if it already parses as a
    complete JSON object, taken at once). A file that shrinks or is replaced is read again from the
    start and :attr:`generation` increases, so a consumer knows to drop what it had.

    Args:
        path: the ``metrics.jsonl`` file, or a run folder that contains one.
        max_malformed: how many malformed lines to keep (all are counted in :attr:`n_malformed`).

    Attributes:
        malformed: the most recent malformed lines, oldest first.
        n_malformed: how many malformed lines were seen in total.
        n_records: how many records were returned in total (this generation).
        generation: increases each time the file is read again from the start.
    """

    def __init__(self, path: str | os.PathLike, *, max_malformed: int = 50) -> None:
        path = Path(path)
        self.path = path / METRICS_FILENAME if path.is_dir() else path
        self.max_malformed = max_malformed
        self.malformed: list[MalformedLine] = []
        self.n_malformed = 0
        self.n_records = 0
        self.generation = 0
        self._offset = 0
        self._tail = b""
        self._line_no = 0
        self._tail_taken = False
        self._identity: tuple[int, int] | None = None

    @property
    def exists(self) -> bool:
        """Whether the file exists now."""
        return self.path.is_file()

    @property
    def pending(self) -> bool:
        """Whether a half-written last line is being held back."""
        return bool(self._tail) and not self._tail_taken

    def _restart(self) -> None:
        self._offset = 0
        self._tail = b""
        self._line_no = 0
        self._tail_taken = False
        self.n_records = 0
        self.generation += 1

    def poll(self, *, final: bool = False) -> list[dict[str, Any]]:
        """Return the records written since the previous call.

        Args:
            final: the writer is known to be done: a half-written last line is reported as
                malformed instead of held back.

        Returns:
            New records in file order (an empty list when the file does not exist yet).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        identity = (st.st_dev, st.st_ino)
        if self._identity is not None and (
            identity != self._identity or st.st_size < self._offset + len(self._tail)
        ):
            log.info("%s was replaced or truncated; reading it from the start", self.path)
            self._restart()
        self._identity = identity
        if st.st_size > self._offset + len(self._tail):
            with open(self.path, "rb") as f:
                f.seek(self._offset + len(self._tail))
                chunk = f.read(st.st_size - self._offset - len(self._tail))
        else:
            chunk = b""
        records: list[dict[str, Any]] = []
        data = self._tail + chunk
        *lines, tail = data.split(b"\n")
        for raw in lines:
            self._offset += len(raw) + 1
            if self._tail_taken:
                # The previous poll already took this line's bytes as a complete object.
                rest = raw[len(self._tail) :]
                self._tail_taken, self._tail = False, b""
                if rest.strip():
                    self._reject(raw, "text after a complete object")
                continue
            self._tail = b""
            self._line_no += 1
            self._take(raw, records)
        self._tail = tail
        if tail and not self._tail_taken:
            # A tail that already parses is a complete object whose newline has not arrived yet.
            try:
                parse_metrics_line(tail.decode("utf-8", errors="replace"))
            except ValueError:
                if final:
                    self._line_no += 1
                    self._reject(tail, "half-written last line")
                    self._offset += len(tail)
                    self._tail = b""
            else:
                self._line_no += 1
                self._take(tail, records)
                self._tail_taken = True
        self.n_records += len(records)
        return records

    def _take(self, raw: bytes, records: list[dict[str, Any]]) -> None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            records.append(parse_metrics_line(text))
        except ValueError as exc:
            self._reject(raw, str(exc))

    def _reject(self, raw: bytes, error: str) -> None:
        bad = MalformedLine(self._line_no, raw.decode("utf-8", errors="replace")[:200], error)
        log.warning("%s %s", self.path, bad)
        self.n_malformed += 1
        self.malformed.append(bad)
        del self.malformed[: -self.max_malformed]


def read_metrics(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[MalformedLine]]:
    """Read a finished ``metrics.jsonl`` at once.

    Args:
        path: the file or the run folder that holds it.

    Returns:
        ``(records, malformed)``; a half-written last line counts as malformed.

    Raises:
        FileNotFoundError: there is no ``metrics.jsonl`` at ``path``.
    """
    follower = MetricsFollower(path, max_malformed=1_000_000)
    if not follower.exists:
        raise FileNotFoundError(
            f"no {METRICS_FILENAME} at {follower.path}; pass a run folder written by "
            "`sdt3-event train` (runs/<name>/)"
        )
    records = follower.poll(final=True)
    return records, follower.malformed


def _num(value: Any) -> float | None:
    """``value`` as a finite float, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    v = _num(value)
    return int(v) if v is not None else None


@dataclass
class TrainingProgress:
    """What a dashboard shows about a run, folded from its ``metrics.jsonl`` records.

    Feed records with :meth:`update`. As written by ``sdt3_event.engine`` a record's ``step`` is the
    global optimiser step (counted from the start of training, across epochs and resumes) and
    ``epoch`` is 0-based; accuracies are percentages.

    Attributes:
        model: model name from the ``"start"`` record.
        total_epochs / steps_per_epoch: planned length of the run, if given.
        steps: ``(step, loss)`` of every step record with a finite loss.
        lrs / throughput: ``(step, lr)`` and ``(step, samples_per_s)``.
        evals: the ``"eval"`` records, in order.
        best_acc1 / best_epoch / best_step: the best evaluation so far.
        epoch / step: the latest position reported.
        finished: an ``"end"`` record arrived (and no new ``"start"`` since).
        failed: the reason of a ``"failed"`` record (and no new ``"start"`` since), else ``None``.
        start_time / last_time: unix time of the first record and of the latest one.
        n_records: records folded in.
    """

    model: str = ""
    total_epochs: int | None = None
    steps_per_epoch: int | None = None
    steps: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    throughput: list[tuple[int, float]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_acc1: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    epoch: int | None = None
    step: int | None = None
    finished: bool = False
    failed: str | None = None
    start_time: float | None = None
    last_time: float | None = None
    n_records: int = 0
    _timed_steps: list[tuple[float, int]] = field(default_factory=list, repr=False)

    def update(self, records: Iterable[dict[str, Any]]) -> None:
        """Fold more records in; unknown events and bad values are ignored."""
        for record in records:
            self.n_records += 1
            t = _num(record.get("time"))
            if t is not None:
                self.start_time = t if self.start_time is None else min(self.start_time, t)
                self.last_time = t if self.last_time is None else max(self.last_time, t)
            event = record.get("event")
            if event == "start":
                self.model = str(record.get("model") or self.model)
                self.total_epochs = _int(record.get("total_epochs")) or self.total_epochs
                self.steps_per_epoch = _int(record.get("steps_per_epoch")) or self.steps_per_epoch
                self.finished = False
                self.failed = None
                # A resumed run restarts its clock: do not measure the pace across the gap.
                self._timed_steps.clear()
            elif event == "step":
                self._on_step(record, t)
            elif event == "eval":
                self._on_eval(record)
            elif event == "end":
                self.finished = True
                self._offer_best(_num(record.get("best_acc1")), None, None)
            elif event == "failed":
                self.failed = str(record.get("reason") or "unknown reason")
            else:
                log.debug("ignoring metrics record with event %r", event)

    def _on_step(self, record: dict[str, Any], t: float | None) -> None:
        step = _int(record.get("step"))
        if step is None:
            return
        epoch = _int(record.get("epoch"))
        if epoch is not None:
            self.epoch = epoch
        self.step = step
        for key, series in (
            ("loss", self.steps),
            ("lr", self.lrs),
            ("samples_per_s", self.throughput),
        ):
            value = _num(record.get(key))
            if value is not None:
                series.append((step, value))
        if t is not None:
            self._timed_steps.append((t, step))

    def _on_eval(self, record: dict[str, Any]) -> None:
        self.evals.append(record)
        epoch, step = _int(record.get("epoch")), _int(record.get("step"))
        if epoch is not None:
            self.epoch = epoch
        if step is not None:
            self.step = step if self.step is None else max(self.step, step)
        best = _num(record.get("best_acc1"))
        if record.get("is_best") is True:
            score = best if best is not None and best >= 0 else _num(record.get("acc1"))
            self._offer_best(score, epoch, step, force=True)
        else:
            self._offer_best(best, None, None)

    def _offer_best(
        self, score: float | None, epoch: int | None, step: int | None, *, force: bool = False
    ) -> None:
        # The writer logs best_acc1 = -inf (clamped to -1e308) before any evaluation.
        if score is None or score < 0:
            return
        if force or self.best_acc1 is None or score > self.best_acc1:
            self.best_acc1 = score
            if epoch is not None or force:
                self.best_epoch, self.best_step = epoch, step

    @property
    def total_steps(self) -> int | None:
        """Planned optimiser steps, when the start record gave both epochs and steps per epoch."""
        if self.total_epochs and self.steps_per_epoch:
            return self.total_epochs * self.steps_per_epoch
        return None

    @property
    def fraction(self) -> float | None:
        """Fraction of the planned steps done, in ``[0, 1]``; 1 once the run has ended."""
        if self.finished:
            return 1.0
        total = self.total_steps
        if not total or self.step is None:
            return None
        return min(1.0, max(0.0, self.step / total))

    def steps_per_s(self, window: int = 50) -> float | None:
        """Recent optimiser steps per second, from the records' timestamps."""
        timed = self._timed_steps[-window:]
        if len(timed) < 2:
            return None
        (t0, g0), (t1, g1) = timed[0], timed[-1]
        if t1 <= t0 or g1 <= g0:
            return None
        return (g1 - g0) / (t1 - t0)

    def eta_s(self, now: float) -> float | None:
        """Seconds until the planned last step at the recent pace; ``0`` once finished.

        Args:
            now: the current unix time; the time already spent since the last record counts
                against the estimate.

        Returns:
            Seconds, or ``None`` when unknown (no plan or pace yet) or overdue (no record for
            longer than the estimate: a stalled or stopped run).
        """
        if self.finished:
            return 0.0
        total, rate = self.total_steps, self.steps_per_s()
        if not total or self.step is None or not rate:
            return None
        remaining = max(0.0, (total - self.step) / rate)
        if self.last_time is not None:
            quiet = max(0.0, now - self.last_time)
            if quiet > remaining and remaining > 0:
                return None  # overdue: the run is stalled or stopped, the pace says nothing
            remaining -= quiet
        return remaining
