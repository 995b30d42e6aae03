"""The training dashboard through Textual's Pilot: finished runs, growing runs, bad files."""

from __future__ import annotations

import asyncio
import json

from sdt3_event.apps.tui.monitor_train import LinePlot, TrainingMonitorApp
from tui_support import FakeClock, text_of, until


def plot_text(app, selector: str) -> str:
    return app.query_one(selector, LinePlot).render().plain


def line(**record) -> str:
    return json.dumps(record) + "\n"


START = line(event="start", time=1000.0, model="sdt3_micro", total_epochs=2, steps_per_epoch=10)


def steps(first: int, last: int, t0: float = 1000.0) -> str:
    # One step per second, loss falling from 2.
    return "".join(
        line(
            event="step",
            time=t0 + s,
            epoch=(s - 1) // 10,
            step=s,
            loss=2.0 / s,
            lr=1e-3,
            samples_per_s=256.0,
        )
        for s in range(first, last + 1)
    )


def evaluation(epoch: int, *, loss: float, acc1: float, acc5: float, best_acc1: float) -> str:
    # The eval record half a second after the epoch's last step (10 steps an epoch, as above).
    step = 10 * (epoch + 1)
    return line(
        event="eval",
        time=1000.5 + step,
        epoch=epoch,
        step=step,
        loss=loss,
        acc1=acc1,
        acc5=acc5,
        best_acc1=best_acc1,
        is_best=acc1 == best_acc1,
    )


def test_finished_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")
    (tmp_path / "metrics.jsonl").write_text(
        START
        + steps(1, 10)
        + evaluation(0, loss=1.0, acc1=60.0, acc5=95.0, best_acc1=60.0)
        + steps(11, 20)
        + evaluation(1, loss=1.2, acc1=55.0, acc5=96.0, best_acc1=60.0)
        + line(event="end", time=1021.0, best_acc1=60.0, status="finished")
    )

    async def main():
        app = TrainingMonitorApp(tmp_path, clock=FakeClock(5000.0))
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            assert "model sdt3_micro · epoch 2/2 · step 20/20" in text_of(app, "#run-line")
            assert "ETA done" in text_of(app, "#progress-text")
            assert "elapsed 0:21" in text_of(app, "#progress-text")
            assert app.query_one("#bar").percentage == 1.0
            best = text_of(app, "#best-line")
            assert "best acc1 60.00% at epoch 1 (step 10)" in best and "best.pt" in best
            assert "● finished · 24 records" in text_of(app, "#run-status")
            loss = plot_text(app, "#loss-plot")
            assert "train 0.1" in loss and "eval 1.2" in loss and "2┤" in loss
            acc = plot_text(app, "#acc-plot")
            assert "acc1 55%" in acc and "acc5 96%" in acc
            assert "256 samples/s" in text_of(app, "#sps-text")
            assert "0.001" in text_of(app, "#lr-text")
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None)
        assert app.return_code == 0

    asyncio.run(main())


def test_growing_run_with_a_half_written_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    clock = FakeClock(1005.0)

    async def main():
        app = TrainingMonitorApp(tmp_path, clock=clock, poll_s=0.05)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            assert "waiting for" in text_of(app, "#run-status")
            assert "no data yet" in plot_text(app, "#loss-plot")
            path.write_text(START + steps(1, 5))
            await until(pilot, lambda: "step 5/20" in text_of(app, "#run-line"))
            # 15 steps left at 1 step/s, the last record at t=1005: ETA 15 s.
            assert "ETA 0:15" in text_of(app, "#progress-text")
            assert "running (last record 0:00 ago)" in text_of(app, "#run-status")
            assert app.query_one("#bar").percentage == 0.25
            nxt = steps(6, 6)
            with open(path, "a") as f:
                f.write(nxt[:20])
            await until(pilot, lambda: "half-written" in text_of(app, "#run-status"))
            assert "step 5/20" in text_of(app, "#run-line")
            assert app.follower.n_malformed == 0
            clock.now = 1010.0
            with open(path, "a") as f:
                f.write(nxt[20:] + "not json at all\n")
            await until(pilot, lambda: "step 6/20" in text_of(app, "#run-line"))
            await until(pilot, lambda: "malformed" in text_of(app, "#run-status"))
            status = text_of(app, "#run-status")
            assert "1 malformed line(s) skipped, last line 8: not JSON" in status
            assert "last record 0:04 ago" in status  # the fake clock moved on
            assert "ETA 0:10" in text_of(app, "#progress-text")  # 14 left - 4 s already spent
            # The x axis spans the planned 20 steps: 6 done fill about the left third.
            loss = plot_text(app, "#loss-plot")
            assert "step 0 … 20" in loss
            curve_rows = loss.splitlines()[:-1]
            assert all(not row[-15:].strip() for row in curve_rows)

    asyncio.run(main())


def test_reload_and_replaced_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(START + steps(1, 8))

    async def main():
        app = TrainingMonitorApp(path, clock=FakeClock(1010.0), poll_s=0.05)
        async with app.run_test(size=(100, 32)) as pilot:
            await until(pilot, lambda: "step 8/20" in text_of(app, "#run-line"))
            # A new run starts writing the same folder: the file is replaced by a shorter one.
            new = tmp_path / "new.jsonl"
            new.write_text(START.replace("sdt3_micro", "sdt3_tiny") + steps(1, 2))
            new.replace(path)
            await until(pilot, lambda: "sdt3_tiny" in text_of(app, "#run-line"))
            assert "step 2/20" in text_of(app, "#run-line")
            await pilot.press("r")
            await pilot.pause()
            assert app.progress.n_records == 3

    asyncio.run(main())


def test_too_small_terminal(tmp_path):
    async def main():
        app = TrainingMonitorApp(tmp_path, clock=FakeClock(0.0))
        async with app.run_test(size=(30, 8)) as pilot:
            await pilot.pause()
            assert not app.query_one("#main").display
            assert "needs at least 50×16" in text_of(app, "#too-small")
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None)

    asyncio.run(main())
