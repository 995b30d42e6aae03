"""The real live pipeline driving the Textual monitor (headless), as ``sdt3-event live`` does on a
terminal: records reach the dashboard, keys reach the pipeline, quitting stops every thread."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("textual")

from sdt3_event.apps.tui.monitor_live import LiveMonitorApp  # noqa: E402

from sdt3_event.stream.pipeline import build_pipeline  # noqa: E402
from sdt3_event.stream.sinks import JsonLinesSink, TeePipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def _until(pilot, condition, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the monitor did not reach the expected state in time")


@pytest.mark.slow
def test_live_pipeline_feeds_the_monitor(demo_checkpoint, tmp_path):
    pipeline = build_pipeline("synthetic:?speed=4", demo_checkpoint, device="cpu", energy_every=2)
    out = tmp_path / "live.jsonl"
    sink = JsonLinesSink.to_file(out)
    tee = TeePipeline(pipeline, [sink])
    app = LiveMonitorApp(tee, snapshot_dir=tmp_path, fps=10)

    async def main():
        async with app.run_test(size=(120, 36)) as pilot:
            await _until(pilot, lambda: app.stats.n_predictions >= 3)
            await pilot.press("p")
            assert pipeline.paused is True
            await pilot.press("p")
            assert pipeline.paused is False
            await pilot.press("q")
            await _until(pilot, lambda: app.return_code is not None)

    asyncio.run(main())
    sink.close()
    assert not any(t.is_alive() for t in pipeline._threads)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    preds = [r for r in records if r["type"] == "prediction"]
    assert len(preds) >= 3 and all(p["firing"] for p in preds)
    assert any(p["energy_uj"] for p in preds)
    assert set(p["true_label"] for p in preds) <= set(pipeline.class_names)
