"""The live dashboard through Textual's Pilot, with a fake pipeline and a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import sys

import numpy as np
import pytest
from sdt3_event.apps.tui.monitor_live import EventView, LiveMonitorApp
from sdt3_event.apps.tui.render import fit_cells
from tui_support import FakeClock, text_of, until

from sdt3_event.stream.records import Prediction, StreamStatus


class FakePipeline:
    """The pipeline interface the monitor uses, fed by the test through a queue."""

    def __init__(self, *, fail_start: bool = False) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.paused = False
        self.started = self.stopped = self.resets = 0
        self.fail_start = fail_start
        self.source_uri = "synthetic://"
        self.model_name = "sdt3_micro"
        self.device = "cpu"

    def start(self) -> None:
        if self.fail_start:
            raise ConnectionRefusedError("tcp://127.0.0.1:7777 refused the connection")
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def reset_stats(self) -> None:
        self.resets += 1

    def get(self, timeout: float | None = None):
        item = None
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item


def prediction(i: int, *, latency_ms: float = 10.0, rate: float = 0.5) -> Prediction:
    frame = np.zeros((2, 32, 48), dtype=np.float32)  # (P, H, W)
    frame[1, 4:8, 4:8] = i + 1
    frame[0, 20:24, 30:40] = 2
    return Prediction(
        window_start_us=i * 100_000,
        window_end_us=(i + 1) * 100_000,
        labels=("wave", "clap", "spin"),
        scores=(0.7, 0.2, 0.1),
        smoothed_label="clap",
        smoothed_score=0.61,
        latency_ms=latency_ms,
        n_events=1000,
        event_rate_mev_s=rate,
        firing={"stage1": 0.25, "stage2": 0.125},
        energy_uj=4.5,
        frame=frame,
    )


STATUS = StreamStatus(
    state="connected",
    source="synthetic://",
    model="sdt3_micro",
    device="cpu",
    events_in=40_000,
    events_dropped=2_000,
    windows_in=20,
    windows_dropped=3,
)


def make_app(pipeline, tmp_path, clock=None) -> LiveMonitorApp:
    return LiveMonitorApp(
        pipeline, snapshot_dir=tmp_path / "snaps", clock=clock or FakeClock(), poll_timeout=0.01
    )


def test_widgets_show_the_records_fed_in(tmp_path):
    pipe, clock = FakePipeline(), FakeClock()

    async def main():
        app = make_app(pipe, tmp_path, clock)
        async with app.run_test(size=(110, 34)) as pilot:
            view = app.query_one(EventView)
            middle = view.render_line(view.size.height // 2)
            assert "waiting for events" in "".join(s.text for s in middle)
            pipe.queue.put(STATUS)
            for i, lat in enumerate([10.0, 20.0, 30.0]):
                pipe.queue.put(prediction(i, latency_ms=lat, rate=0.25 * (i + 1)))
            await until(pilot, lambda: app.stats.n_predictions == 3)
            await until(pilot, lambda: "predictions 3" in text_of(app, "#counters"))
            preds = text_of(app, "#predictions")
            assert "clap 0.61 smoothed" in preds
            assert "wave" in preds and "0.70" in preds and "0.20" in preds
            assert preds.count("wave 0.70") == 3  # the history lists all three windows
            assert "0.75 Mev/s" in text_of(app, "#rate-text")
            assert "30.0 ms" in text_of(app, "#latency-text")
            assert "p50 20.0" in text_of(app, "#latency-text")
            source = text_of(app, "#source-line")
            assert "connected" in source and "sdt3_micro on cpu" in source
            counters = text_of(app, "#counters")
            assert "dropped 3 windows (15.0%)" in counters and "2.0k of 40.0k events" in counters
            assert view.frame is app.stats.last.frame and view.frame[1, 4, 4] == 3
            rows = ["".join(s.text for s in view.render_line(y)) for y in range(view.size.height)]
            # The 32x48 frame fills the view at its own aspect (two pixels per cell), centred.
            out_h, out_w = fit_cells((32, 48), (view.size.width, view.size.height))
            drawn = [r for r in rows if "▀" in r]
            assert len(drawn) == out_h // 2 and {r.count("▀") for r in drawn} == {out_w}
            assert out_w == view.size.width or out_h // 2 == view.size.height
            assert abs(out_w / (out_h) - 48 / 32) < 0.1
            # The fake clock drives the time-based text.
            clock.now += 3.0
            await until(pilot, lambda: "last 3.0 s ago" in text_of(app, "#counters"))
        assert pipe.started == 1 and pipe.stopped == 1

    asyncio.run(main())


def test_keys_do_what_the_footer_says(tmp_path):
    pipe = FakePipeline()

    async def main():
        app = make_app(pipe, tmp_path)
        async with app.run_test(size=(110, 34)) as pilot:
            footer_keys = {b.key for b in app.BINDINGS}
            assert footer_keys == {"p", "r", "v", "s", "q"}
            pipe.queue.put(STATUS)
            pipe.queue.put(prediction(0))
            await until(pilot, lambda: app.stats.n_predictions == 1 and app.stats.status)
            await pilot.press("s")  # snapshot
            await until(pilot, lambda: app.last_snapshot is not None)
            assert app.last_snapshot.is_file() and app.last_snapshot.suffix == ".png"
            assert app.last_snapshot.parent == tmp_path / "snaps"
            await pilot.press("p")
            assert pipe.paused is True
            await until(pilot, lambda: "PAUSED" in text_of(app, "#source-line"))
            await pilot.press("p")
            assert pipe.paused is False
            await pilot.press("v")
            assert app.query_one("#view").current == "spikes"
            spikes = text_of(app, "#spike-text")
            assert "stage1" in spikes and "0.2500" in spikes and "4.50 µJ" in spikes
            await pilot.press("v")
            assert app.query_one("#view").current == "events"
            await pilot.press("r")
            assert pipe.resets == 1 and app.stats.n_predictions == 0
            assert not app.stats.latency_ms and not app.stats.history
            assert "dropped 0 windows" in text_of(app, "#counters")
            # The current window stays on screen; its history is gone.
            assert text_of(app, "#predictions").endswith("recent\n")
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None)
        assert app.return_code == 0 and app.return_value == 0 and pipe.stopped == 1

    asyncio.run(main())


def test_snapshot_without_a_window_warns_instead_of_failing(tmp_path):
    async def main():
        app = make_app(FakePipeline(), tmp_path)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await pilot.press("s")
            await pilot.pause()
            assert app.last_snapshot is None
            assert any("no window" in str(n.message) for n in app._notifications)

    asyncio.run(main())


@pytest.mark.parametrize("how", ["get", "start"])
def test_a_failing_source_shows_its_status(tmp_path, how):
    pipe = FakePipeline(fail_start=how == "start")
    if how == "get":
        pipe.queue.put(STATUS)
        pipe.queue.put(prediction(0))
        pipe.queue.put(OSError("camera unplugged"))

    async def main():
        app = make_app(pipe, tmp_path)
        async with app.run_test(size=(110, 34)) as pilot:
            await until(pilot, lambda: "error" in text_of(app, "#source-line"))
            line = text_of(app, "#source-line")
            expected = "camera unplugged" if how == "get" else "refused the connection"
            assert expected in line
            await pilot.press("v")  # the app still answers keys
            assert app.query_one("#view").current == "spikes"
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None)
        assert app.return_code == 1 and app.return_value == 1
        assert pipe.stopped == (1 if how == "get" else 0)

    asyncio.run(main())


def test_finished_source_status_is_shown(tmp_path):
    pipe = FakePipeline()
    pipe.queue.put(StreamStatus(state="reconnecting", source="tcp://h:1", message="retry in 1 s"))

    async def main():
        app = make_app(pipe, tmp_path)
        async with app.run_test(size=(110, 34)) as pilot:
            await until(pilot, lambda: "reconnecting" in text_of(app, "#source-line"))
            assert "retry in 1 s" in text_of(app, "#source-line")
            pipe.queue.put(StreamStatus(state="finished", source="tcp://h:1"))
            await until(pilot, lambda: "finished" in text_of(app, "#source-line"))

    asyncio.run(main())


def test_records_are_coalesced_into_few_redraws(tmp_path):
    pipe = FakePipeline()
    n = 400
    for i in range(n):
        pipe.queue.put(prediction(i))
    batches = []

    async def main():
        app = make_app(pipe, tmp_path)
        app.max_batch = 50

        def hook(message):
            if isinstance(message, LiveMonitorApp.Records):
                batches.append(len(message.records))

        async with app.run_test(size=(110, 34), message_hook=hook) as pilot:
            await until(pilot, lambda: app.stats.n_predictions == n)
            assert len(app.stats.history) == 8  # bounded history

    asyncio.run(main())
    assert sum(batches) == n
    assert len(batches) < n / 5
    assert max(batches) <= 50  # faster than the screen: the rest waits in the pipeline


def test_too_small_terminal_shows_a_message(tmp_path):
    async def main():
        app = make_app(FakePipeline(), tmp_path)
        async with app.run_test(size=(40, 10)) as pilot:
            await pilot.pause()
            assert not app.query_one("#main").display
            assert app.query_one("#too-small").display
            assert "too small: 40×10" in text_of(app, "#too-small")
            await pilot.resize_terminal(100, 30)
            await until(pilot, lambda: app.query_one("#main").display)
            assert not app.query_one("#too-small").display

    asyncio.run(main())


def test_an_ended_stream_is_not_polled_in_a_busy_loop(tmp_path):
    import time

    class EndedPipeline(FakePipeline):
        calls: list[float] = []

        def get(self, timeout=None):
            EndedPipeline.calls.append(time.monotonic())
            return None  # an ended LivePipeline answers at once

    async def main():
        app = make_app(EndedPipeline(), tmp_path)  # poll_timeout=0.01: at most ~100 polls/s
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.5)

    asyncio.run(main())
    calls = EndedPipeline.calls
    span = calls[-1] - calls[0]
    # A busy loop would make tens of thousands of calls; waiting allows one per 10 ms.
    assert len(calls) >= 2 and len(calls) <= span / 0.01 + 10


def test_log_lines_become_notifications_not_screen_garbage(tmp_path):
    import io
    import logging

    console = logging.StreamHandler(sys.__stderr__)  # like the CLI's basicConfig handler
    root = logging.getLogger()
    root.addHandler(console)

    class LoggingPipeline(FakePipeline):
        def get(self, timeout=None):
            if not getattr(self, "logged", False):
                self.logged = True  # from the worker thread, like the pipeline's own threads
                logging.getLogger("sdt3_event.stream.pipeline").warning("camera hiccup %d", 7)
            return super().get(timeout)

    async def main():
        app = make_app(LoggingPipeline(), tmp_path)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await until(pilot, lambda: any("camera hiccup 7" in str(n.message) for n in app._notifications))  # fmt: skip
            assert console not in root.handlers and app.log_capture in root.handlers
        return app

    try:
        app = asyncio.run(main())
        assert console in root.handlers and app.log_capture not in root.handlers
        out = io.StringIO()
        app.log_capture.replay(out)
        assert "WARNING sdt3_event.stream.pipeline: camera hiccup 7" in out.getvalue()
    finally:
        root.removeHandler(console)


def test_repeated_log_lines_do_not_pile_up(tmp_path):
    import logging

    class RetryingPipeline(FakePipeline):
        n = 0

        def get(self, timeout=None):
            if self.n < 5:
                self.n += 1
                logging.getLogger("sdt3_event.stream.network").warning(
                    "retry %d [Errno 111]", self.n
                )
            return super().get(timeout)

    async def main():
        app = make_app(RetryingPipeline(), tmp_path)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await until(pilot, lambda: any("retry 5" in str(n.message) for n in app._notifications))  # fmt: skip
            logs = [n for n in app._notifications if n.title == "log"]
            assert len(logs) == 1 and logs[0].message.endswith("retry 5 [Errno 111]")
        assert len(app.log_capture.records) == 5

    asyncio.run(main())


def test_predictions_without_frames_say_so(tmp_path):
    pipe = FakePipeline()
    pipe.queue.put(dataclasses.replace(prediction(0), frame=None))

    async def main():
        app = make_app(pipe, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.stats.n_predictions == 1)
            view = app.query_one(EventView)

            def middle() -> str:
                return "".join(s.text for s in view.render_line(view.size.height // 2))

            # the view redraws on its next refresh after the record arrives
            await until(pilot, lambda: "carry no event frame" in middle())
            assert "carry no event frame" in middle()

    asyncio.run(main())
