"""Widgets both monitors use (Textual; loaded only with the apps)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class SparkRow(Horizontal):
    """One line: a label, a sparkline ``#<key>-spark`` and its value text ``#<key>-text``.

    The app fills them with ``query_one("#<key>-spark", Sparkline).data = ...`` and
    ``query_one("#<key>-text", Static).update(...)``; the stylesheet sizes the ``spark-*`` classes.
    """

    def __init__(self, label: str, key: str) -> None:
        super().__init__(classes="spark-row")
        self.label = label
        self.key = key

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="spark-label")
        yield Sparkline([], id=f"{self.key}-spark")
        yield Static(id=f"{self.key}-text", classes="spark-value")
