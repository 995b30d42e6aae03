"""A readable message instead of a broken layout when the terminal is too small."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Static


class SizeGuard:
    """Mixin for the monitor apps: hides ``#main`` and shows ``#too-small`` below ``MIN_SIZE``.

    The app yields :meth:`compose_too_small` in its ``compose`` and calls :meth:`check_size` from
    ``on_mount``; resizes are handled here. The screen gets the class ``-too-small`` while too small.
    """

    MIN_SIZE: tuple[int, int] = (60, 18)

    def compose_too_small(self) -> ComposeResult:
        yield Static(id="too-small")

    def check_size(self, width: int | None = None, height: int | None = None) -> bool:
        """Update the layout for ``(width, height)`` (default: the app's size); True if it fits."""
        size = self.size  # type: ignore[attr-defined]
        width = size.width if width is None else width
        height = size.height if height is None else height
        min_w, min_h = self.MIN_SIZE
        small = width < min_w or height < min_h
        self.screen.set_class(small, "-too-small")  # type: ignore[attr-defined]
        if small:
            self.query_one("#too-small", Static).update(  # type: ignore[attr-defined]
                f"The terminal is too small: {width}×{height}.\n"
                f"The monitor needs at least {min_w}×{min_h}: enlarge the window.\n"
                "Press q to quit."
            )
        return not small

    def on_resize(self, event: events.Resize) -> None:
        self.check_size(event.size.width, event.size.height)
