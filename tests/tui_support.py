"""Helpers for driving the Textual monitors through their Pilot (importable because pytest puts
tests/ on sys.path)."""

from __future__ import annotations

from rich.text import Text


class FakeClock:
    """A clock the test sets by hand: ``clock.now = ...``; calling it returns ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def text_of(app, selector: str) -> str:
    """The plain text a ``Static`` shows."""
    content = app.query_one(selector).content
    return content.plain if isinstance(content, Text) else str(content)


async def until(pilot, condition, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (then one more pause); fail after ``timeout`` s."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError("the app did not reach the expected state in time")
