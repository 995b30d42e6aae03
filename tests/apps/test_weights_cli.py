"""``sdt3-event weights`` and tags in ``train`` / ``eval`` / ``live``, against a local fake Drive."""

from __future__ import annotations

import pytest
import torch
from drive_server import DriveFile, DriveServer, files_under, official_bytes, tag_registrar
from sdt3_event.apps.cli import main
from testpaths import REPO

from sdt3_event.engine.config import load_config
from sdt3_event.engine.runner import build_experiment_model
from sdt3_event.hub import CACHE_ENV
from sdt3_event.models.zoo import get_pretrained
from sdt3_event.registry import create_model

FILE_ID = "1microCheckpointFileId0000000"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(1)
    return create_model("sdt3_micro")


def test_list_shows_every_official_tag(cache, capsys):
    assert main(["weights", "list", "sdt3_*"]) == 0
    out = capsys.readouterr().out
    assert "sdt3_10m.in1k*" in out and "78.50" in out and "sdt3_171m.in1k_1x8_384" in out
    line = next(x for x in out.splitlines() if x.startswith("sdt3_10m.in1k"))
    assert "10.0M" in line and "224x224" in line and line.rstrip().endswith("-")  # not cached
    assert "sdt1_8_768" not in out


def test_download_path_verify_roundtrip(cache, monkeypatch, micro, capsys):
    add = tag_registrar(monkeypatch)
    with DriveServer() as drive:
        drive.files[FILE_ID] = DriveFile(official_bytes(micro))
        tag = add("sdt3_micro.test", drive.view_url(FILE_ID))
        assert main(["weights", "path", "sdt3_micro.test"]) == 1
        captured = capsys.readouterr()
        assert captured.out.strip() == str(tag.cache_path)
        assert "not downloaded yet" in captured.err and drive.view_url(FILE_ID) in captured.err
        assert main(["weights", "download", "sdt3_micro.test"]) == 0
        assert capsys.readouterr().out.strip() == str(tag.cache_path)
        n = len(drive.requests)
        assert main(["weights", "download", "sdt3_micro.test"]) == 0
        assert len(drive.requests) == n
    assert main(["weights", "path", "sdt3_micro.test"]) == 0
    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert "ok   sdt3_micro.test" in out and "strict key/shape load only" in out
    tag.cache_path.write_bytes(b"PK\x03\x04 broken zip")
    assert main(["weights", "verify", "sdt3_micro.test"]) == 1
    assert "FAIL sdt3_micro.test" in capsys.readouterr().out


def test_download_failure_is_one_line_and_leaves_nothing(cache, monkeypatch, capsys):
    add = tag_registrar(monkeypatch)
    with DriveServer() as drive:
        drive.files[FILE_ID] = DriveFile(b"", html=True)
        add("sdt3_micro.test", drive.view_url(FILE_ID))
        assert main(["weights", "download", "sdt3_micro.test"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "HTML" in err
    assert files_under(cache) == []


def test_unknown_tag_and_nothing_cached(cache, capsys):
    assert main(["weights", "download", "sdt3_10m.in2k"]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()
    assert main(["weights", "verify", "sdt3_10m.in1k"]) == 1
    assert "not downloaded" in capsys.readouterr().err


def test_train_config_takes_a_tag(cache, monkeypatch, micro, capsys):
    add = tag_registrar(monkeypatch)
    with DriveServer() as drive:
        drive.files[FILE_ID] = DriveFile(official_bytes(micro))
        add("sdt3_micro.test", drive.view_url(FILE_ID))
        cfg = load_config(None, ["model.name=sdt3_micro", "model.pretrained=sdt3_micro.test"])
        from sdt3_event.apps.weights import fetch_for_training

        assert fetch_for_training(cfg.model.name, cfg.model.pretrained) is None
        name, model, _ = build_experiment_model(cfg, num_classes=5, in_chans=2)
    assert name == "sdt3_micro" and model.head.out_features == 5
    assert torch.equal(model.block3[0].attn.q_conv[0].weight, micro.block3[0].attn.q_conv[0].weight)
    bare = load_config(None, ["model.name=sdt3_micro", "model.pretrained=test"])
    assert (
        build_experiment_model(bare, num_classes=11, in_chans=2)[1] is not None
    )  # bare tag, cached
    wrong = load_config(None, ["model.name=sdt3_micro", "model.pretrained=sdt3_10m.in1k"])
    assert "holds sdt3_10m" in fetch_for_training(wrong.model.name, wrong.model.pretrained)


def test_train_cli_reports_an_unreachable_tag_in_one_line(cache, monkeypatch, tmp_path, capsys):
    add = tag_registrar(monkeypatch)
    add("sdt3_micro.test", "http://127.0.0.1:9/file/d/x/view")
    code = main(
        [
            "train",
            "-c",
            str(REPO / "configs" / "synthetic_demo.yaml"),
            "--output-dir",
            str(tmp_path),
            "--set",
            "model.pretrained=sdt3_micro.test",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "http://127.0.0.1:9/file/d/x/view" in err and "sdt3_micro.test.pth" in err
    assert not (tmp_path / "synthetic_demo").exists()


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("finetune_*.yaml")))
def test_finetune_presets_use_a_tag_of_their_model(path):
    cfg = load_config(path, [])
    assert get_pretrained(cfg.model.pretrained).architecture == cfg.model.name


@pytest.mark.parametrize("command", ["eval", "live"])
def test_eval_and_live_say_an_imagenet_tag_is_not_an_event_classifier(command, capsys):
    args = ["eval", "sdt3_10m.in1k", "--data", "synthetic"]
    if command == "live":
        args = ["live", "--model", "sdt3_10m.in1k", "--json", "--max-windows", "1"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "ImageNet classifier" in err and "not an event classifier" in err
    assert err.count("\n") == 1


def test_byte_progress_draws_only_on_a_terminal(monkeypatch, capsys):
    import sys

    from sdt3_event.apps._progress import byte_progress

    with byte_progress("x") as progress:
        assert progress is None  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with byte_progress("x.pth") as progress:
        progress(512, 1024)
        progress(1024, 1024)
    assert "x.pth" in capsys.readouterr().err
