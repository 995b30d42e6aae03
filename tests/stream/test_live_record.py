"""Recording while inferring: AEDAT 4.0 files that `aedat` and dv-processing read back identically,
rotation, filters, a SIGTERM in the middle of a run, and replay + scoring with ``eval --events``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from stream.test_aedat4_codec import aedat_events, dv_events
from testpaths import REPO

from sdt3_event.events.filters import background_activity_filter, refractory_filter
from sdt3_event.events.io import read_events, write_events
from sdt3_event.events.schema import make_events
from sdt3_event.stream.recorder import EventRecorder, rotated_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENSOR = (128, 128, 2)


def _stream(n=60_000, seed=0, t0=1_000):
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 2_000_000, n))
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.random(n) < 0.5)


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in ("t", "x", "y", "p"))


def test_recorder_round_trip_rotation_and_late_events(tmp_path):
    events = _stream()
    chunks = np.array_split(events, 37)
    rec = EventRecorder(tmp_path / "out.aedat4", max_mb=0.1)
    for chunk in chunks:
        rec.write(chunk, SENSOR)
    late = make_events([5, 6], [1, 2], [1, 2], [True, False])  # before the last event written
    rec.write(late, SENSOR)
    paths = rec.close()
    assert rec.close() == paths  # idempotent
    assert len(paths) > 2 and paths[0] == tmp_path / "out.aedat4"
    assert paths[1] == rotated_path(tmp_path / "out.aedat4", 1) == tmp_path / "out-001.aedat4"
    assert rec.n_events == len(events) and rec.n_late == 2
    assert all(p.stat().st_size < 0.1e6 + 200_000 for p in paths)
    assert not list(tmp_path.glob("*.tmp"))
    ours = np.concatenate([read_events(p)[0] for p in paths])
    theirs = np.concatenate([aedat_events(p) for p in paths])
    dv = np.concatenate([dv_events(p)[0] for p in paths])
    assert _same(ours, events) and _same(theirs, events) and _same(dv, events)
    assert dv_events(paths[0])[1] == (128, 128)


def test_recorder_filters_the_stream_as_one_array(tmp_path):
    events = _stream(20_000)
    rec = EventRecorder(tmp_path / "f.aedat4", filters="ba:20000,refractory:50000,pol:on")
    for chunk in np.array_split(events, 23):
        rec.write(chunk, SENSOR)
    rec.close()
    expected = refractory_filter(background_activity_filter(events, 20000), 50000)
    expected = expected[expected["p"]]
    per_chunk = np.concatenate(
        [
            refractory_filter(background_activity_filter(c, 20000), 50000)
            for c in np.array_split(events, 23)
        ]
    )
    assert 0 < len(expected) < len(events) and len(per_chunk[per_chunk["p"]]) != len(expected)
    assert _same(aedat_events(tmp_path / "f.aedat4"), expected)


def _live(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sdt3_event.apps.cli", "live", "--device", "cpu", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
    )


def test_live_records_exactly_the_source_and_replays(tmp_path, capsys):
    from sdt3_event.apps.cli import main

    events = _stream(40_000)
    src = tmp_path / "src.npz"
    write_events(src, events, SENSOR)
    out = tmp_path / "rec" / "out.aedat4"
    code = main(
        ["live", "--device", "cpu", "--source", f"file:{src}?speed=0", "--lossless",
         "--predictions-only", "--record", str(out), "--record-raw", "--filter", "ba:1000"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert _same(aedat_events(out), events)  # raw: exactly what the source delivered
    beside = out.with_name("out.predictions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in beside] == printed and len(printed) > 5
    # replay + score: the same windows, so the same predictions
    labels = tmp_path / "labels.csv"
    labels.write_text("class,start_us,end_us\nblink,0,1000000\n2,1000000,2100000\n")
    report = tmp_path / "report"
    assert main(["eval", "demo", "--events", str(out), "--labels", str(labels),
                 "--out", str(report)]) == 0  # fmt: skip
    result = json.loads((report / "eval_events.json").read_text())
    assert result["labelled_windows"] == result["windows"] == len(printed)
    assert 0 <= result["accuracy"] <= 1 and set(result["per_class"]) == {"blink", "rotate_ccw"}
    bad = tmp_path / "bad.csv"
    bad.write_text("fly,0,10\n")
    capsys.readouterr()
    assert main(["eval", "demo", "--events", str(out), "--labels", str(bad)]) == 1
    assert "unknown class 'fly'" in capsys.readouterr().err


def test_live_record_flag_errors(capsys):
    from sdt3_event.apps.cli import main

    assert main(["live", "--record-raw"]) == 2
    assert "need --record" in capsys.readouterr().err
    assert main(["live", "--record", "x.raw"]) == 2
    assert ".aedat4" in capsys.readouterr().err


def test_sigterm_mid_run_leaves_a_valid_recording(tmp_path):
    out = tmp_path / "kill.aedat4"
    proc = _live("--json", "--record", str(out), "--record-max-mb", "0.2", "--speed", "4")
    try:
        for _ in range(3):  # a few predictions: the recorder has written packets by then
            assert proc.stdout.readline(), proc.stderr.read()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    paths = sorted(tmp_path.glob("kill*.aedat4"))
    assert paths and not list(tmp_path.glob("*.tmp")) and "recorded" in err
    total = 0
    for path in paths:
        ours, theirs, (dv, _) = read_events(path)[0], aedat_events(path), dv_events(path)
        assert len(ours) > 0 and _same(ours, theirs) and _same(ours, dv)
        total += len(ours)
    assert f"recorded {total} events" in err
