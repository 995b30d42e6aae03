"""What the live and training monitors share: stylesheet, size guard, log capture, panel titles."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Header

from .log_capture import LogCapture
from .size_guard import SizeGuard


class MonitorApp(SizeGuard, App[int]):
    """Base of the two monitor apps.

    A subclass composes its panels in :meth:`compose_panels` (the header, footer and size guard are
    composed here), names its bordered panels in ``PANEL_TITLES`` (selector -> title) and calls
    :meth:`prepare_screen` first thing in its ``on_mount``. Log lines become notifications from
    then until the app unmounts (:attr:`log_capture`; the caller replays them after ``run``).
    """

    CSS_PATH = "monitor.tcss"
    PANEL_TITLES: dict[str, str] = {}

    def __init__(self) -> None:
        super().__init__()
        self.log_capture = LogCapture(self)

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_too_small()
        with Vertical(id="main"):
            yield from self.compose_panels()
        yield Footer()

    def compose_panels(self) -> ComposeResult:
        """The panels inside ``#main``, which the size guard hides in a too small terminal."""
        raise NotImplementedError

    def prepare_screen(self) -> None:
        """Fit the layout to the terminal, start capturing log lines, title the panels."""
        self.check_size()
        self.log_capture.install()
        for selector, title in self.PANEL_TITLES.items():
            self.query_one(selector).border_title = title

    def on_unmount(self) -> None:
        # Runs after a subclass's own on_unmount (Textual calls each class's handler in MRO order).
        self.log_capture.uninstall()
