"""The training view of the terminal monitor: follows ``runs/<name>/metrics.jsonl`` as it grows.

Loss and accuracy curves are drawn with braille dots, learning rate and throughput as sparklines; the
header panel has epoch progress, ETA and the best checkpoint so far. A finished run is read once; a live
one is polled every ``poll_s`` seconds, and a half-written last line waits until it completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import ProgressBar, Sparkline, Static

from sdt3_event.runlog import MetricsFollower, TrainingProgress

from .base import MonitorApp
from .render import braille_plot, format_count, format_duration, format_num
from .widgets import SparkRow

AXIS_W = 8


def _thin(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` evenly spaced points, always keeping the last."""
    n = len(points)
    if n <= limit or limit < 2:
        return list(points)
    stride = n / (limit - 1)
    return [points[round(i * stride)] for i in range(limit - 1)] + [points[-1]]


class LinePlot(Widget):
    """Line plots of a few series in braille dots, with a min/max axis and a legend line."""

    def __init__(self, *, y_unit: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.y_unit = y_unit
        self.series: list[tuple[str, str, list[tuple[float, float]]]] = []
        self.x_range: tuple[float, float] | None = None

    def set_series(
        self,
        series: list[tuple[str, str, list[tuple[float, float]]]],
        x_range: tuple[float, float] | None = None,
    ) -> None:
        """Show ``(name, colour, points)`` series; points are ``(x, y)`` with x increasing.

        Args:
            series: the curves.
            x_range: fixed x limits (e.g. the run's planned steps), default the data's extent.
        """
        self.series = series
        self.x_range = x_range
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        pts = [p for _, _, s in self.series for p in s]
        if not pts:
            return Text("no data yet", style="dim", justify="center")
        plot_w, plot_h = max(1, width - AXIS_W), max(1, height - 1)
        ys = [p[1] for p in pts]
        xs = [p[0] for p in pts]
        y0, y1 = min(ys), max(ys)
        x0, x1 = self.x_range if self.x_range is not None else (min(xs), max(xs))
        lines = braille_plot(
            [_thin(s, 4 * plot_w) for _, _, s in self.series],
            plot_w,
            plot_h,
            [c for _, c, _ in self.series],
            x_range=(x0, max(x1, max(xs))),
        )
        out = Text()
        for r, line in enumerate(lines):
            label = ""
            if r == 0:
                label = f"{y1:.4g}"
            elif r == plot_h - 1:
                label = f"{y0:.4g}"
            out.append(label[: AXIS_W - 1].rjust(AXIS_W - 1) + "┤", style="dim")
            out.append_text(line)
            out.append("\n")
        out.append(f"{'step':>{AXIS_W - 1}} {x0:.0f} … {max(x1, max(xs)):.0f}  ", style="dim")
        for name, color, s in self.series:
            if s:
                out.append("● ", style=color)
                out.append(f"{name} {s[-1][1]:.4g}{self.y_unit}  ")
        return out


class TrainingMonitorApp(MonitorApp):
    """The training dashboard for one run folder.

    Args:
        run_dir: the run folder (``runs/<name>``) or its ``metrics.jsonl``.
        poll_s: seconds between reads of the file.
        clock: unix seconds (compared with the records' ``time``); tests pass a fake one.
    """

    MIN_SIZE = (50, 16)
    PANEL_TITLES = {
        "#progress-panel": "Run",
        "#loss-plot": "Loss",
        "#acc-plot": "Accuracy (eval)",
        "#rates": "Learning rate · throughput",
    }
    BINDINGS = [
        Binding("r", "reload", "Reload"),
        Binding("q", "quit_monitor", "Quit"),
    ]

    def __init__(
        self,
        run_dir: str | Path,
        *,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        path = Path(run_dir)
        self.run_dir = path.parent if path.suffix == ".jsonl" else path
        self.follower = MetricsFollower(path)
        self.progress = TrainingProgress()
        self.poll_s = poll_s
        self.clock = clock
        self.title = f"sdt3-event monitor · {self.run_dir.name or self.run_dir}"
        self._drawn: tuple[TrainingProgress, int] | None = None

    def compose_panels(self) -> ComposeResult:
        with Vertical(id="progress-panel"):
            yield Static(id="run-line")
            with Horizontal(id="progress-row"):
                yield ProgressBar(total=1000, show_eta=False, show_percentage=True, id="bar")
                yield Static(id="progress-text")
            yield Static(id="best-line")
        with Horizontal(id="plots"):
            yield LinePlot(id="loss-plot", classes="plot")
            yield LinePlot(id="acc-plot", classes="plot", y_unit="%")
        with Vertical(id="rates"):
            yield SparkRow("lr", "lr")
            yield SparkRow("samples", "sps")
        yield Static(id="run-status")

    def on_mount(self) -> None:
        self.prepare_screen()
        self.poll()
        self.set_interval(self.poll_s, self.poll)

    # ----------------------------------------------------------------------------- data
    def poll(self) -> None:
        """Read what was appended to ``metrics.jsonl`` and redraw (curves only when it grew)."""
        generation = self.follower.generation
        try:
            records = self.follower.poll()
        except OSError as exc:  # shared storage hiccup: say so and try again next tick
            self.query_one("#run-status", Static).update(
                Text(f"cannot read {self.follower.path}: {exc}", style="bold red")
            )
            return
        if self.follower.generation != generation:
            self.progress = TrainingProgress()
        if records:
            self.progress.update(records)
        try:
            self.redraw()
        except NoMatches:  # a last tick while the app shuts down and its widgets are gone
            pass

    def redraw(self) -> None:
        """Redraw every panel from :attr:`progress`."""
        pr = self.progress
        now = self.clock()
        self._draw_progress(pr, now)
        self._draw_status(pr, now)
        if self._drawn is not None and self._drawn[0] is pr and self._drawn[1] == pr.n_records:
            return  # nothing new: only the time-based text moved
        self._drawn = (pr, pr.n_records)
        # With a planned length, the curves fill the plot as the run progresses.
        x_range = (0.0, float(pr.total_steps)) if pr.total_steps else None
        self.query_one("#loss-plot", LinePlot).set_series(
            [("train", "cyan", [(float(s), v) for s, v in pr.steps])]
            + [("eval", "yellow", _eval_points(pr, "loss"))],
            x_range,
        )
        acc = [
            ("acc1", "green", _eval_points(pr, "acc1")),
            ("acc5", "blue", _eval_points(pr, "acc5")),
        ]
        if any("ema_acc1" in e for e in pr.evals):
            acc.append(("ema acc1", "magenta", _eval_points(pr, "ema_acc1")))
        self.query_one("#acc-plot", LinePlot).set_series(acc, x_range)
        self.query_one("#lr-spark", Sparkline).data = [v for _, v in pr.lrs[-240:]]
        self.query_one("#lr-text", Static).update(
            f"{format_num(pr.lrs[-1][1], '{:.3g}') if pr.lrs else '--'}"
        )
        self.query_one("#sps-spark", Sparkline).data = [v for _, v in pr.throughput[-240:]]
        sps = pr.throughput[-1][1] if pr.throughput else None
        rate = pr.steps_per_s()
        self.query_one("#sps-text", Static).update(
            f"{format_count(sps) if sps is not None else '--'} samples/s"
            f"  {format_num(rate, '{:.2f}')} steps/s"
        )

    def _draw_progress(self, pr: TrainingProgress, now: float) -> None:
        epoch = (
            "--" if pr.epoch is None else str(min(pr.epoch + 1, pr.total_epochs or pr.epoch + 1))
        )
        total_epochs = pr.total_epochs or "?"
        step = "--" if pr.step is None else str(pr.step)
        self.query_one("#run-line", Static).update(
            f"model {pr.model or '?'} · epoch {epoch}/{total_epochs} · step {step}/"
            f"{pr.total_steps or '?'}"
        )
        frac = pr.fraction
        bar = self.query_one("#bar", ProgressBar)
        bar.update(total=1000 if frac is not None else None, progress=round((frac or 0) * 1000))
        elapsed = (
            None if pr.start_time is None or pr.last_time is None else pr.last_time - pr.start_time
        )
        eta = pr.eta_s(now)
        self.query_one("#progress-text", Static).update(
            f"elapsed {format_duration(elapsed)} · ETA {_eta_text(pr, eta)}"
        )
        best = Text()
        if pr.best_acc1 is None:
            best.append("best acc1 -- (no evaluation yet)", style="dim")
        else:
            best.append(f"best acc1 {pr.best_acc1:.2f}%", style="bold green")
            if pr.best_epoch is not None:
                best.append(f" at epoch {pr.best_epoch + 1}")
            if pr.best_step is not None:
                best.append(f" (step {pr.best_step})")
            ckpt = self.run_dir / "checkpoints" / "best.pt"
            if ckpt.is_file():
                best.append(f" → {ckpt}", style="dim")
        self.query_one("#best-line", Static).update(best)

    def _draw_status(self, pr: TrainingProgress, now: float) -> None:
        f = self.follower
        text = Text()
        if not f.exists:
            text.append(f"waiting for {f.path} (not written yet)", style="yellow")
        else:
            if pr.failed is not None:
                text.append(f"● failed: {pr.failed}", style="bold red")
            elif pr.finished:
                text.append("● finished", style="cyan")
            elif pr.last_time is not None:
                text.append("● running", style="green")
                text.append(f" (last record {format_duration(max(0.0, now - pr.last_time))} ago)")
            else:
                text.append("● no records yet", style="yellow")
            text.append(f" · {f.n_records} records from {f.path}", style="dim")
            if f.pending:
                text.append(" · a half-written line is pending", style="dim")
        if f.n_malformed:
            text.append(
                f" · {f.n_malformed} malformed line(s) skipped, last {f.malformed[-1]}",
                style="bold red",
            )
        self.query_one("#run-status", Static).update(text)

    # ----------------------------------------------------------------------------- actions
    def action_reload(self) -> None:
        """Forget everything and read the file again from the start."""
        self.follower = MetricsFollower(self.follower.path)
        self.progress = TrainingProgress()
        self.poll()
        self.notify(f"reloaded {self.follower.path}")

    def action_quit_monitor(self) -> None:
        self.exit(0, return_code=0)


def _eval_points(pr: TrainingProgress, key: str) -> list[tuple[float, float]]:
    """``(step, value)`` of the eval records that have a finite ``key``."""
    out = []
    for i, rec in enumerate(pr.evals):
        value, step = rec.get(key), rec.get("step", i)
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300:
            if isinstance(step, int | float):
                out.append((float(step), float(value)))
    return out


def _eta_text(pr: TrainingProgress, eta: float | None) -> str:
    if pr.finished:
        return "done"
    return "-" if pr.failed is not None else format_duration(eta)
