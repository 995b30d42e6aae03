"""metrics.jsonl follower and progress folding: finished files, growing files, bad lines."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdt3_event.runlog import (
    MetricsFollower,
    TrainingProgress,
    parse_metrics_line,
    read_metrics,
)


def _line(**record) -> bytes:
    return (json.dumps(record) + "\n").encode()


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


START = {
    "event": "start",
    "time": 100.0,
    "model": "sdt3_micro",
    "total_epochs": 2,
    "steps_per_epoch": 10,
}


def test_parse_metrics_line_rejects_what_is_not_a_record():
    assert parse_metrics_line('{"event": "step", "loss": 1}')["loss"] == 1
    for bad, why in (("{nope", "not JSON"), ("[1, 2]", "list"), ('{"loss": 1}', "event")):
        with pytest.raises(ValueError, match=why):
            parse_metrics_line(bad)


def test_read_finished_file_reports_malformed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(
        _line(**START)
        + b"this is not json\n"
        + b"\n"
        + b"[1, 2]\n"
        + _line(event="step", time=101.0, epoch=0, step=1, loss=2.0)
        + b'{"event": "step", "time": 10'  # the writer died mid-line
    )
    records, malformed = read_metrics(tmp_path)  # a run folder resolves to its metrics.jsonl
    assert [r["event"] for r in records] == ["start", "step"]
    assert [m.line_no for m in malformed] == [2, 4, 6]
    assert "half-written" in malformed[-1].error


def test_read_metrics_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder"):
        read_metrics(tmp_path)


def test_follower_waits_for_file_then_holds_half_written_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    f = MetricsFollower(path)
    assert not f.exists and f.poll() == []
    path.write_bytes(_line(**START))
    assert [r["event"] for r in f.poll()] == ["start"]
    assert f.poll() == []
    step = _line(event="step", time=101.0, epoch=0, step=1, loss=2.0)
    _append(path, step[:15])
    assert f.poll() == [] and f.pending
    _append(path, step[15:] + step.replace(b'"step": 1', b'"step": 2'))
    assert [r["step"] for r in f.poll()] == [1, 2]
    assert not f.pending and f.n_malformed == 0 and f.n_records == 3


def test_follower_takes_complete_object_before_its_newline_only_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(json.dumps(START).encode())
    assert len(MetricsFollower(path).poll()) == 1
    f = MetricsFollower(path)
    assert [r["event"] for r in f.poll()] == ["start"]
    _append(path, b"\n" + _line(event="end", time=102.0, best_acc1=50.0))
    assert [r["event"] for r in f.poll()] == ["end"]
    assert f.n_records == 2 and f.n_malformed == 0


def test_follower_restarts_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(_line(**START) + _line(event="step", time=101.0, epoch=0, step=1, loss=2.0))
    f = MetricsFollower(path)
    assert len(f.poll()) == 2
    tmp = tmp_path / "new.jsonl"
    tmp.write_bytes(_line(**{**START, "model": "other"}))
    os.replace(tmp, path)
    records = f.poll()
    assert f.generation == 1 and [r["model"] for r in records] == ["other"]


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_follower_chunking_does_not_change_the_records(tmp_path_factory, cuts):
    data = (
        _line(**START)
        + b"garbage\n"
        + b"".join(
            _line(event="step", time=100.0 + i, epoch=0, step=i, loss=1.0 / i) for i in range(1, 6)
        )
        + _line(event="end", time=110.0, best_acc1=12.5)
    )
    path = tmp_path_factory.mktemp("chunks") / "metrics.jsonl"
    path.write_bytes(b"")
    f = MetricsFollower(path)
    got = []
    prev = 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        _append(path, data[prev:cut])
        prev = cut
        got += f.poll()
    expected, malformed = read_metrics(path)
    assert got == expected
    assert f.n_malformed == len(malformed) == 1


def test_progress_from_the_training_writer(tmp_path):
    from sdt3_event.runlog import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.write("start", model="sdt3_micro", total_epochs=2, steps_per_epoch=10)
    log.write("step", epoch=0, step=5, loss=2.0, lr=1e-3, samples_per_s=100.0)
    log.write(
        "eval", epoch=0, step=10, loss=1.5, acc1=40.0, acc5=90.0, best_acc1=40.0, is_best=True
    )
    log.write("step", epoch=1, step=15, loss=float("nan"), lr=5e-4, samples_per_s=120.0)
    log.close()
    pr = TrainingProgress()
    pr.update(read_metrics(tmp_path)[0])
    assert pr.model == "sdt3_micro" and pr.total_steps == 20
    assert pr.steps == [(5, 2.0)]  # the NaN loss (written as null) is not plotted
    assert [v for _, v in pr.lrs] == [1e-3, 5e-4]
    assert (pr.epoch, pr.step, pr.fraction) == (1, 15, 0.75)
    assert (pr.best_acc1, pr.best_epoch, pr.best_step) == (40.0, 0, 10)
    assert not pr.finished


def test_progress_eta_best_and_end():
    pr = TrainingProgress()
    pr.update(
        [
            START,
            {
                "event": "eval",
                "time": 100.0,
                "epoch": 0,
                "step": 0,
                "acc1": 1.0,
                "best_acc1": -1e308,
            },
            {"event": "step", "time": 100.0, "epoch": 0, "step": 2, "loss": 3.0},
            {"event": "step", "time": 104.0, "epoch": 0, "step": 6, "loss": 2.0},
        ]
    )
    assert pr.best_acc1 is None  # -1e308 stands for "no best yet"
    assert pr.steps_per_s() == pytest.approx(1.0)
    assert pr.eta_s(now=104.0) == pytest.approx(14.0)  # 14 steps left at 1 step/s
    assert pr.eta_s(now=110.0) == pytest.approx(8.0)  # time since the last record counts
    assert pr.eta_s(now=200.0) is None  # silent for longer than the estimate: stalled
    # The EMA weights may make best_acc1 higher than acc1: the record's best_acc1 wins.
    pr.update([{"event": "eval", "time": 105.0, "epoch": 0, "step": 10, "acc1": 50.0,
                "best_acc1": 55.0, "is_best": True}])  # fmt: skip
    pr.update([{"event": "eval", "time": 106.0, "epoch": 1, "step": 20, "acc1": 52.0,
                "best_acc1": 55.0, "is_best": False}])  # fmt: skip
    assert (pr.best_acc1, pr.best_epoch, pr.best_step) == (55.0, 0, 10)
    pr.update([{"event": "end", "time": 107.0, "best_acc1": 55.0}, {"event": "mystery"}])
    assert pr.finished and pr.fraction == 1.0 and pr.eta_s(now=0.0) == 0.0
    # A resumed run starts again and its pace is measured afresh.
    pr.update([{**START, "time": 500.0}])
    assert not pr.finished and pr.steps_per_s() is None
