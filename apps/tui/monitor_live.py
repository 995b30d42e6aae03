"""The live view of the terminal monitor: what the camera sees, what the model predicts, how it runs.

A thread worker drains ``pipeline.get(timeout)`` and posts the records to the app in batches at most
``fps`` times a second, so the UI never waits on the model and never redraws faster than the eye needs,
whatever the event rate. The app only reads plain :class:`Prediction` / :class:`StreamStatus`
records and sets ``pipeline.paused``; it never imports torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Sparkline, Static
from textual.worker import get_current_worker

from sdt3_event.stream.records import Prediction, StreamStatus

from .base import MonitorApp
from .render import (
    as_display_frame,
    bar,
    fit_cells,
    format_count,
    format_duration,
    format_num,
    frame_to_rgb,
    halfblock_rows,
    resample_counts,
    save_snapshot,
)
from .stats import LiveStats
from .widgets import SparkRow

STATE_STYLES = {
    "connecting": "yellow",
    "connected": "green",
    "reconnecting": "yellow",
    "finished": "cyan",
    "error": "bold red",
}


class PipelineLike(Protocol):
    """What the monitor needs from ``sdt3_event.stream.pipeline.LivePipeline``."""

    paused: bool

    def start(self) -> Any: ...

    def stop(self) -> Any: ...

    def get(self, timeout: float | None = None) -> Prediction | StreamStatus | None: ...

    def reset_stats(self) -> Any: ...


class EventView(Widget):
    """The current window as half-block cells: two pixels per cell, ON and OFF in two colours.

    The frame is scaled to the widget, keeping the sensor's aspect, and centred.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frame: np.ndarray | None = None
        self._rows: list[list[Segment]] = []
        self._key: tuple | None = None
        self._pad = (0, 0)
        self.placeholder = "waiting for events…"

    def set_frame(self, frame: np.ndarray | None, placeholder: str = "waiting for events…") -> None:
        """Show ``frame`` (``(P, H, W)`` counts), or ``placeholder`` when there is none."""
        self.frame = frame
        self.placeholder = placeholder
        self._key = None
        self.refresh()

    def _layout_rows(self) -> None:
        width, height = self.size.width, self.size.height
        key = (width, height, id(self.frame))
        if key == self._key:
            return
        self._key = key
        self._rows = []
        frame = as_display_frame(self.frame)
        if frame is None or width <= 0 or height <= 0:
            return
        out_h, out_w = fit_cells(frame.shape[1:], (width, height))
        if out_h == 0:
            return
        small = resample_counts(frame, (out_h, out_w))  # (P, H_out, W_out)
        self._rows = halfblock_rows(frame_to_rgb(small))
        self._pad = ((width - out_w) // 2, (height - out_h // 2) // 2)

    def render_line(self, y: int) -> Strip:
        self._layout_rows()
        width = self.size.width
        if not self._rows:
            if y == self.size.height // 2:
                msg = self.placeholder if self.frame is None else "cannot draw this frame"
                return Strip([Segment(msg.center(width)[:width], self.rich_style)], width)
            return Strip.blank(width, self.rich_style)
        left, top = self._pad
        row = y - top
        if 0 <= row < len(self._rows):
            segments = [Segment(" " * left, self.rich_style), *self._rows[row]]
            return Strip(segments).adjust_cell_length(width, self.rich_style)
        return Strip.blank(width, self.rich_style)


class LiveMonitorApp(MonitorApp):
    """The live dashboard for one :class:`~sdt3_event.stream.pipeline.LivePipeline`.

    Args:
        pipeline: started and stopped by the app (in its worker thread); see :class:`PipelineLike`.
        title: shown in the header.
        fps: the most redraws per second.
        snapshot_dir: where ``s`` writes PNG snapshots.
        clock: monotonic seconds; tests pass a fake one.
        poll_timeout: seconds each ``pipeline.get`` waits.
        manage_pipeline: start the pipeline when the app starts and stop it when it ends.
        max_batch: the most records taken from the pipeline per frame; beyond it the worker waits
            for the next frame (the pipeline's bounded queue absorbs and counts the excess).
    """

    MIN_SIZE = (60, 18)
    PANEL_TITLES = {"#view": "Events", "#predictions": "Predictions", "#system": "System"}
    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("r", "reset_stats", "Reset stats"),
        Binding("v", "switch_view", "Events/spikes"),
        Binding("s", "snapshot", "Snapshot PNG"),
        Binding("q", "quit_monitor", "Quit"),
    ]

    class Records(Message):
        """A batch of records drained from the pipeline, oldest first."""

        def __init__(self, records: Sequence[Prediction | StreamStatus]) -> None:
            super().__init__()
            self.records = list(records)

    def __init__(
        self,
        pipeline: PipelineLike,
        *,
        title: str = "sdt3-event live",
        fps: float = 20.0,
        snapshot_dir: str | Path = ".",
        clock: Callable[[], float] = time.monotonic,
        poll_timeout: float = 0.05,
        manage_pipeline: bool = True,
        max_batch: int = 256,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.title = title
        self.frame_interval = 1.0 / max(1.0, fps)
        self.snapshot_dir = Path(snapshot_dir)
        self.clock = clock
        self.poll_timeout = poll_timeout
        self.manage_pipeline = manage_pipeline
        self.max_batch = max(1, max_batch)
        self.stats = LiveStats(clock=clock)
        self.view = "events"
        self.pipeline_stopped = not manage_pipeline
        self.last_snapshot: Path | None = None
        self._dirty = False
        self._lifecycle = threading.Lock()

    # ----------------------------------------------------------------------------- layout
    def compose_panels(self) -> ComposeResult:
        with Horizontal(id="top"):
            with ContentSwitcher(initial="events", id="view"):
                yield EventView(id="events")
                with Vertical(id="spikes"):
                    yield Static(id="spike-text")
                    yield Sparkline([], id="energy-spark")
            yield Static(id="predictions")
        with Vertical(id="system"):
            yield Static(id="source-line")
            yield SparkRow("events ", "rate")
            yield SparkRow("latency", "latency")
            yield Static(id="counters")

    def on_mount(self) -> None:
        self.prepare_screen()
        self.refresh_panels()
        self.set_interval(self.frame_interval, self._redraw_if_dirty)
        self.drain_pipeline()

    # ----------------------------------------------------------------------------- worker
    @work(thread=True, exclusive=True, group="pipeline", exit_on_error=False)
    def drain_pipeline(self) -> None:
        """Start the pipeline, then forward its records in batches until the app ends."""
        worker = get_current_worker()
        source = str(getattr(self.pipeline, "source_uri", ""))
        try:
            if self.manage_pipeline:
                with self._lifecycle:
                    if self.pipeline_stopped:  # the app ended before the worker got going
                        return
                    try:
                        self.pipeline.start()
                    except Exception as exc:  # the source could not be opened: show it
                        self.pipeline_stopped = True
                        self.post_message(
                            self.Records([_error_status(source, exc, "start failed")])
                        )
                        return
            batch: list[Prediction | StreamStatus] = []
            last_post = time.monotonic()
            while not worker.is_cancelled:
                asked = time.monotonic()
                try:
                    rec = self.pipeline.get(timeout=self.poll_timeout)
                except Exception as exc:  # the pipeline died: report it once and stop draining
                    batch.append(_error_status(source, exc, "pipeline failed"))
                    self.post_message(self.Records(batch))
                    return
                now = time.monotonic()
                if rec is not None:
                    batch.append(rec)
                elif now - asked < self.poll_timeout / 2:
                    # An ended stream answers at once: wait here instead of spinning.
                    worker.cancelled_event.wait(self.poll_timeout)
                    now = time.monotonic()
                if len(batch) >= self.max_batch:
                    # Faster than the screen can use: leave the rest in the pipeline's bounded
                    # queue (which drops and counts) until the next frame, so the UI thread and
                    # the GIL stay free.
                    worker.cancelled_event.wait(max(0.0, last_post + self.frame_interval - now))
                    now = time.monotonic()
                if batch and now - last_post >= self.frame_interval:
                    self.post_message(self.Records(batch))
                    batch, last_post = [], now
            if batch:
                self.post_message(self.Records(batch))
        finally:
            self._stop_pipeline()

    def _stop_pipeline(self) -> None:
        """Stop the pipeline once, from whichever thread gets here first."""
        with self._lifecycle:
            if self.pipeline_stopped:
                return
            self.pipeline_stopped = True
            try:
                self.pipeline.stop()
            except Exception as exc:
                self.log.error(f"pipeline.stop() failed: {exc!r}")

    def on_unmount(self) -> None:
        # Stop the source as the app closes; the worker sees the cancellation on its next poll.
        self._stop_pipeline()

    def on_live_monitor_app_records(self, message: Records) -> None:
        self.stats.add(message.records)
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        try:
            if self._dirty:
                self._dirty = False
                self.refresh_panels()
            else:
                # Time-based text ("last prediction 3 s ago") still moves without new records.
                self._refresh_counters()
        except NoMatches:  # a last tick while the app shuts down and its widgets are gone
            pass

    # ----------------------------------------------------------------------------- drawing
    def refresh_panels(self) -> None:
        """Redraw every panel from :attr:`stats` (at most ``fps`` times a second)."""
        last = self.stats.last
        if self.view == "events":
            view = self.query_one(EventView)
            frame = last.frame if last is not None else None
            placeholder = (
                "waiting for events…"
                if last is None
                else "the predictions carry no event frame (the pipeline keeps none)"
            )
            if frame is not view.frame or placeholder != view.placeholder:
                view.set_frame(frame, placeholder)
        else:
            self._refresh_spikes()
        self.query_one("#predictions", Static).update(self._predictions_text())
        self.query_one("#rate-spark", Sparkline).data = list(self.stats.rate_mev_s)
        self.query_one("#latency-spark", Sparkline).data = list(self.stats.latency_ms)
        cur, p50, p99 = self.stats.rate_summary()
        self.query_one("#rate-text", Static).update(
            f"{format_num(cur)} Mev/s  p50 {format_num(p50)}  p99 {format_num(p99)}"
        )
        cur, p50, p99 = self.stats.latency_summary()
        self.query_one("#latency-text", Static).update(
            f"{format_num(cur, '{:.1f}')} ms  p50 {format_num(p50, '{:.1f}')}  "
            f"p99 {format_num(p99, '{:.1f}')}"
        )
        self._refresh_counters()

    def _source_text(self) -> Text:
        st = self.stats.status
        state = st.state if st is not None else "connecting"
        text = Text("source ")
        text.append(f"● {state}", style=STATE_STYLES.get(state, ""))
        source = (st.source if st is not None and st.source else "") or str(
            getattr(self.pipeline, "source_uri", "")
        )
        if source:
            text.append(f"  {source}")
        if st is not None and st.message:
            text.append(f"  ({st.message})", style=STATE_STYLES.get(state, ""))
        model = (st.model if st is not None and st.model else "") or str(
            getattr(self.pipeline, "model_name", "") or "?"
        )
        device = (st.device if st is not None and st.device else "") or str(
            getattr(self.pipeline, "device", "") or "?"
        )
        text.append(f"   model {model} on {device}", style="dim")
        if getattr(self.pipeline, "paused", False):
            text.append("   ⏸ PAUSED", style="bold yellow")
        return text

    def _refresh_counters(self) -> None:
        self.query_one("#source-line", Static).update(self._source_text())
        st = self.stats.status
        win_in = st.windows_in if st else 0
        win_drop = st.windows_dropped if st else 0
        ev_in = st.events_in if st else 0
        ev_drop = st.events_dropped if st else 0
        pct = 100.0 * win_drop / win_in if win_in else 0.0
        since = self.stats.since_last_s()
        self.query_one("#counters", Static).update(
            f"dropped {win_drop} windows ({pct:.1f}%) · {format_count(ev_drop)} of "
            f"{format_count(ev_in)} events   predictions {self.stats.n_predictions} "
            f"({self.stats.predictions_per_s():.1f}/s)   last "
            f"{'--' if since is None else format_duration(since) if since >= 60 else f'{since:.1f} s'}"
            " ago"
        )

    def _predictions_text(self) -> Text:
        last = self.stats.last
        text = Text()
        if last is None:
            text.append("no prediction yet", style="dim")
            return text
        text.append("▶ ", style="bold")
        text.append(last.smoothed_label or "?", style="bold reverse")
        text.append(f" {last.smoothed_score:.2f} smoothed\n\n")
        name_w = max((len(lbl) for lbl in last.labels), default=4)
        name_w = min(max(name_w, 4), 14)
        for lbl, score in zip(last.labels, last.scores, strict=False):
            text.append(f"{lbl[:name_w]:<{name_w}} ")
            text.append(bar(score, 12), style="green")
            text.append(f" {score:5.2f}\n")
        text.append("\nrecent\n", style="bold")
        t0 = self.stats.first_start_us or 0
        for pred in reversed(self.stats.history):  # stream time since the first window
            text.append(f"{(pred.window_end_us - t0) / 1e6:7.2f}s ", style="dim")
            text.append(f"{pred.label[:name_w]:<{name_w}} {pred.score:.2f}\n")
        return text

    def _refresh_spikes(self) -> None:
        last = self.stats.last
        text = Text()
        # Energy first: a deep model's stage list may run past the bottom of the panel.
        energy = list(self.stats.energy_uj)
        if energy:
            text.append(
                f"energy per inference {energy[-1]:.2f} µJ  (mean {np.mean(energy):.2f} µJ)\n\n",
                style="bold",
            )
        else:
            text.append("energy per inference --\n\n", style="dim")
        firing = last.firing if last is not None else {}
        if not firing:
            text.append(
                "no firing statistics in the predictions "
                "(the predictor records them when sdt3_event.spikes is available)",
                style="dim",
            )
        else:
            mean = float(np.mean(list(firing.values())))
            text.append(
                f"firing rate per stage (spikes / neuron / step), mean {mean:.4f}\n", style="bold"
            )
            peak = max(max(firing.values()), 1e-9)
            name_w = min(max(len(k) for k in firing), 16)
            for name, rate in firing.items():
                text.append(f"{name[:name_w]:<{name_w}} ")
                text.append(bar(rate / peak, 20), style="magenta")
                text.append(f" {rate:.4f}\n")
        self.query_one("#spike-text", Static).update(text)
        self.query_one("#energy-spark", Sparkline).data = energy

    # ----------------------------------------------------------------------------- actions
    def action_toggle_pause(self) -> None:
        """Pause or resume inference (the pipeline keeps reading and counts what it skips)."""
        self.pipeline.paused = not bool(getattr(self.pipeline, "paused", False))
        self.sub_title = "paused" if self.pipeline.paused else ""
        self.refresh_panels()

    def action_reset_stats(self) -> None:
        """Zero the rolling statistics here and the pipeline's counters."""
        reset = getattr(self.pipeline, "reset_stats", None)
        if callable(reset):
            reset()
        self.stats.reset()
        self.refresh_panels()
        self.notify("statistics reset")

    def action_switch_view(self) -> None:
        """Switch the left panel between the event view and the spike view."""
        self.view = "spikes" if self.view == "events" else "events"
        switcher = self.query_one("#view", ContentSwitcher)
        switcher.current = self.view
        switcher.border_title = "Spikes" if self.view == "spikes" else "Events"
        self.refresh_panels()

    def action_snapshot(self) -> None:
        """Save the current window as a PNG and say where."""
        last = self.stats.last
        frame = as_display_frame(last.frame) if last is not None else None
        if frame is None:
            self.notify("no window to save yet", severity="warning")
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = self.snapshot_dir / f"snapshot-{stamp}-{_slug(last.label)}.png"
        try:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            save_snapshot(frame, path, caption=f"{last.label} {last.score:.2f}")
        except OSError as exc:
            self.notify(f"snapshot failed: {exc}", severity="error")
            return
        self.last_snapshot = path
        # in the header, not a toast: a toast covers the System panel and a long path wraps
        self.sub_title = f"saved {path.name}"

    def action_quit_monitor(self) -> None:
        """Leave: exit status 1 when the source ended in an error, else 0."""
        st = self.stats.status
        code = 1 if st is not None and st.state == "error" else 0
        self.exit(code, return_code=code)


def _error_status(source: str, exc: BaseException, what: str) -> StreamStatus:
    return StreamStatus(
        state="error",
        source=source,
        message=f"{what}: {type(exc).__name__}: {exc}",
        wall_time=time.time(),
    )


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40] or "window"
