"""Keep log lines off the screen while a Textual app owns the terminal.

The CLI's logging handler writes to the real stderr, which is the terminal the app draws on, so a
warning from the pipeline's threads would print over the dashboard. :class:`LogCapture` swaps the
root logger's console handlers for one that turns records into app notifications, and puts them
back when the app ends; :meth:`LogCapture.replay` then writes what was captured to stderr, so no
warning is lost.
"""

from __future__ import annotations

import logging
import sys
from collections import deque

from textual.app import App
from textual.notifications import Notification


def _streams() -> set[int]:
    return {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) if s}


# Seen before any app runs (a running Textual app swaps sys.stderr/sys.stdout for its own).
_STARTUP_CONSOLES = _streams()


def _is_console(handler: logging.Handler) -> bool:
    """A handler that writes to the terminal (stderr or stdout, now, at import or originally)."""
    consoles = _streams() | _STARTUP_CONSOLES
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and id(getattr(handler, "stream", None)) in consoles
    )


class LogCapture(logging.Handler):
    """A logging handler that shows records at ``level`` and above as notifications in ``app``.

    Args:
        app: the running app (records from any thread are handed over thread-safely).
        level: the lowest level to show; lower records are dropped, as the console would.
        keep: how many records to keep for :meth:`replay`.
    """

    def __init__(self, app: App, level: int = logging.WARNING, keep: int = 50) -> None:
        super().__init__(level)
        self.app = app
        self.records: deque[logging.LogRecord] = deque(maxlen=keep)
        self._removed: list[logging.Handler] = []
        self._installed = False
        self._shown: Notification | None = None
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def install(self) -> None:
        """Replace the root logger's console handlers with this one (and route warnings here)."""
        if self._installed:
            return
        root = logging.getLogger()
        self._removed = [h for h in root.handlers if _is_console(h)]
        for h in self._removed:
            root.removeHandler(h)
        root.addHandler(self)
        logging.captureWarnings(True)
        self._installed = True

    def uninstall(self) -> None:
        """Put the console handlers back."""
        if not self._installed:
            return
        root = logging.getLogger()
        root.removeHandler(self)
        for h in self._removed:
            root.addHandler(h)
        logging.captureWarnings(False)
        self._installed = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        try:
            message = self.format(record)
        except Exception:  # a bad format string must not break the app
            message = str(record.msg)
        severity = "error" if record.levelno >= logging.ERROR else "warning"
        app = self.app
        loop = getattr(app, "_loop", None)
        if loop is None or not app.is_running:
            return
        try:
            # Never block the logging thread (it may be the pipeline's): schedule and go on.
            loop.call_soon_threadsafe(self._show, message, severity)
        except RuntimeError:  # the loop is closed: the record is kept for replay()
            pass

    def _show(self, message: str, severity: str) -> None:
        """Show ``message``, replacing the previous log notification (a retry loop that logs
        every second must not pile notifications over the dashboard). Runs on the app's loop."""
        app = self.app
        if not app.is_running or app._exit:
            return
        with app._context():  # a bare loop callback runs outside Textual's context
            if self._shown is not None and self._shown in app._notifications:
                app._unnotify(self._shown)
            self._shown = Notification(
                message, title="log", severity=severity, timeout=8, markup=False
            )
            # Added at once (not via a Notify message) so the next call can replace it.
            app._notifications.add(self._shown)
            app._refresh_notifications()

    def replay(self, stream=None) -> None:
        """Write the captured records to ``stream`` (default stderr) after the app has ended."""
        stream = stream or sys.stderr
        for record in self.records:
            stream.write(f"{record.levelname} {self.format(record)}\n")
