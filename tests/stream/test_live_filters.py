"""``live --filter``: the grammar reaches the live contract; bad specs are CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from checkpoint_support import save_micro_checkpoint
from event_support import write_random_recording

from sdt3_event.events.contract import DataContract

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    contract = DataContract(
        (40, 32, 2), (32, 32), 2, window_us=20_000, class_names=("a", "b", "c"), filters="ba:500"
    )
    folder = tmp_path_factory.mktemp("live_filters")
    save_micro_checkpoint(folder / "tiny.pt", contract)
    write_random_recording(folder / "rec.npz", 3_000, (40, 32, 2), seed=1, t_max=100_000)
    return folder / "tiny.pt", folder / "rec.npz"


def _run(capsys, *args):
    from sdt3_event.apps.cli import main

    code = main(["live", "--device", "cpu", "--predictions-only", "--lossless", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_live_filter_replaces_the_checkpoint_filters(files):
    from sdt3_event.stream.pipeline import build_pipeline

    ckpt, rec = files
    pipeline = build_pipeline(f"file:{rec}", str(ckpt), device="cpu", warmup=False)
    assert pipeline.predictor.contract.filters == "ba:500"  # training's filters by default
    pipeline.stop()
    pipeline = build_pipeline(
        f"file:{rec}", str(ckpt), device="cpu", warmup=False, filters="pol:on, roi:0,0,20,32"
    )
    assert pipeline.predictor.contract.filters == "pol:on,roi:0,0,20,32"
    pipeline.stop()


def test_live_filter_runs_and_bad_specs_exit_2(files, capsys):
    ckpt, rec = files
    src = ["--source", f"file:{rec}?speed=0", "--model", str(ckpt)]
    code, records, err = _run(capsys, *src, "--filter", "ba:2000,roi:0,0,20,16,pol:off")
    assert code == 0, err
    assert len(records) > 5 and all(r["type"] == "prediction" for r in records)
    for bad, message in [("ba:fast", "--filter: ba: 'fast' is not an integer"), ("x:1", "unknown")]:
        code, out, err = _run(capsys, *src, "--filter", bad)
        assert code == 2 and out == [] and message in err and "Traceback" not in err


def test_filters_and_window_representations_bin_on_the_cpu():
    from sdt3_event.events.transforms import build_frame_transform
    from sdt3_event.stream.predictor import Predictor

    plain = DataContract((8, 8, 2), (8, 8), 2, window_us=100)
    assert build_frame_transform(plain).device_bins
    for contract in (
        DataContract((8, 8, 2), (8, 8), 2, window_us=100, filters="ba:10"),
        DataContract((8, 8, 2), (8, 8), 2, window_us=100, representation="voxel"),
        DataContract((8, 8, 2), (8, 8), 2, window_us=100, representation="time_surface"),
    ):
        transform = build_frame_transform(contract)
        assert not transform.device_bins and not transform.streams
        with pytest.raises(ValueError, match="frames_torch"):
            transform.frames_torch(*(torch.zeros(1, dtype=torch.long),) * 4, t_start_us=0)
        model = torch.nn.Flatten()
        predictor = Predictor(model, contract, device="cpu", device_binning=True, firing=False)
        predictor.bind((8, 8, 2))
        assert not predictor.device_binning
