"""Pretrained tags end to end against a local server that answers like Google Drive.

The checkpoints are ``sdt3_micro`` state dicts the tests write themselves in the official container
layout (``{"model": state_dict, "args": argparse.Namespace}``); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import socket
import sys

import pytest
import torch
from drive_server import (
    DriveFile,
    DriveServer,
    files_under,
    official_bytes,
    one_line,
    tag_registrar,
)

from sdt3_event.hub import CACHE_ENV, DownloadError
from sdt3_event.models import zoo
from sdt3_event.models.zoo import download_pretrained, verify_pretrained
from sdt3_event.registry import create_model, list_models

FILE_ID = "1microCheckpointFileId0000000"


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return create_model("sdt3_micro")


@pytest.fixture(scope="module")
def micro_bytes(micro):
    return official_bytes(micro)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture
def drive():
    with DriveServer() as d:
        yield d


@pytest.fixture
def register(monkeypatch):
    return tag_registrar(monkeypatch)


# --- the official table ---------------------------------------------------------------------------


def test_every_official_tag_is_complete_and_builds():
    names = zoo.list_pretrained()
    assert len(names) == 14
    for name in names:
        tag = zoo.get_pretrained(name)
        assert tag.architecture in list_models(), name
        assert tag.url.startswith("https://drive.google.com/"), name
        assert tag.source.startswith("BICLab/"), name
        with torch.device("meta"):
            model = create_model(name)
        assert model.pretrained_cfg["tag"] == name
        assert model.pretrained_cfg["input_size"][1:] == tag.input_size[1:]
        for key, value in tag.kwargs.items():
            assert model.model_config[key] == value, (name, key)
    # D follows the official 1xD naming; only the Large 384 file has another input size
    assert zoo.get_pretrained("sdt3_171m.in1k_1x8").kwargs["D"] == 8
    assert zoo.get_pretrained("sdt3_83m.in1k_1x4").kwargs["D"] == 4
    assert zoo.get_pretrained("sdt3_171m.in1k_1x8_384").input_size == (3, 384, 384)
    assert zoo.default_tag("sdt3_10m").name == "sdt3_10m.in1k"
    assert zoo.get_pretrained("Efficient_Spiking_Transformer_m.in1k").name == "sdt3_10m.in1k"


def test_top1_values_are_the_official_ones():
    top1 = {n: zoo.get_pretrained(n).top1 for n in zoo.list_pretrained()}
    assert top1["sdt3_10m.in1k"] == 78.5 and top1["sdt3_19m.in1k"] == 79.8
    assert top1["sdt2_55m.in1k_kd_t4"] == 80.0 and top1["sdt1_8_768.in1k"] == 77.07


def test_unknown_tag_and_foreign_tag_raise(cache):
    with pytest.raises(KeyError, match="sdt3_10m.in1k"):
        create_model("sdt3_10m.in2k")
    with pytest.raises(ValueError, match="holds sdt3_19m"):
        create_model("sdt3_10m", pretrained="sdt3_19m.in1k")
    with pytest.raises(FileNotFoundError, match="its tags: sdt3_10m.in1k"):
        create_model("sdt3_10m", pretrained="nothing_here.pth")
    with pytest.raises(FileNotFoundError, match="no official pretrained weights"):
        create_model("sdt3_micro", pretrained=True)


# --- downloads through the fake Drive -------------------------------------------------------------


def test_confirmation_page_then_file_then_cache_hit(drive, cache, register, micro, micro_bytes):
    drive.files[FILE_ID] = DriveFile(micro_bytes)
    register("sdt3_micro.test", drive.view_url(FILE_ID))
    model = create_model("sdt3_micro.test", pretrained=True)
    for key, value in micro.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    paths = [p for p, _ in drive.requests]
    # /uc -> 303 -> /download (virus-scan page with cookie + form) -> /download?confirm&uuid
    assert paths == ["/uc", "/download", "/download"]
    assert files_under(cache) == ["weights/sdt3_micro.test.pth"]
    n = len(drive.requests)
    assert create_model("sdt3_micro", pretrained="test") is not None  # bare tag of the arch
    assert download_pretrained("sdt3_micro.test") == cache / "weights" / "sdt3_micro.test.pth"
    assert len(drive.requests) == n, "a cached tag must not touch the network"


def test_html_error_page_is_refused_in_one_line(drive, cache, register):
    drive.files[FILE_ID] = DriveFile(b"", html=True)
    register("sdt3_micro.test", drive.view_url(FILE_ID))
    with pytest.raises(DownloadError) as info:
        download_pretrained("sdt3_micro.test")
    text = one_line(info.value)
    assert "Too many users" in text and "'<!DOCTYPE html>" in text
    assert str(cache / "weights" / "sdt3_micro.test.pth") in text
    assert files_under(cache) == []


def test_non_checkpoint_body_is_refused_quoting_it(drive, cache, register):
    drive.files[FILE_ID] = DriveFile(b"just some text, no torch file", large=False)
    register("sdt3_micro.test", drive.view_url(FILE_ID))
    with pytest.raises(DownloadError, match="starts with 'just some text") as info:
        download_pretrained("sdt3_micro.test")
    one_line(info.value)
    assert files_under(cache) == []


def test_wrong_architecture_is_removed_with_a_message(drive, cache, register):
    other = create_model("sdt3_micro", embed_dim=(8, 16, 32, 48))
    drive.files[FILE_ID] = DriveFile(official_bytes(other))
    register("sdt3_micro.test", drive.view_url(FILE_ID))
    with pytest.raises(DownloadError, match="is not sdt3_micro.test.*removed") as info:
        create_model("sdt3_micro.test", pretrained=True)
    one_line(info.value)
    assert files_under(cache) == []


def test_recorded_sha256_mismatch_is_removed(drive, cache, register, micro_bytes):
    drive.files[FILE_ID] = DriveFile(micro_bytes)
    register("sdt3_micro.test", drive.view_url(FILE_ID), sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256") as info:
        download_pretrained("sdt3_micro.test")
    one_line(info.value)
    assert files_under(cache) == []
    good = hashlib.sha256(micro_bytes).hexdigest()
    register("sdt3_micro.good", drive.view_url(FILE_ID), sha256=good)
    assert download_pretrained("sdt3_micro.good").is_file()


def test_offline_names_url_and_manual_path(cache, register):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file/d/{FILE_ID}/view"
    register("sdt3_micro.test", url)
    with pytest.raises(DownloadError) as info:
        download_pretrained("sdt3_micro.test")
    text = one_line(info.value)
    assert url in text and str(cache / "weights" / "sdt3_micro.test.pth") in text
    assert files_under(cache) == []


def test_drive_folder_takes_its_one_checkpoint(drive, cache, register, micro_bytes):
    drive.files["1logFileId000000000000000000"] = DriveFile(b"epoch 1 ...", name="log.txt")
    drive.files[FILE_ID] = DriveFile(micro_bytes, name="55M_kd_T4.pth")
    drive.folders["1folderId0000000000000000000"] = ["1logFileId000000000000000000", FILE_ID]
    register("sdt3_micro.test", drive.folder_url("1folderId0000000000000000000"))
    assert download_pretrained("sdt3_micro.test").read_bytes() == micro_bytes
    assert drive.requests[0][0] == "/embeddedfolderview"


def test_manually_saved_file_is_used_and_verified(cache, register, micro_bytes):
    tag = register("sdt3_micro.test", "http://127.0.0.1:9/file/d/x/view")
    tag.cache_path.parent.mkdir(parents=True)
    tag.cache_path.write_bytes(micro_bytes)
    assert verify_pretrained(tag).exact
    create_model("sdt3_micro.test", pretrained=True)


def test_http_url_is_cached_by_url(drive, cache, micro, micro_bytes):
    drive.files[FILE_ID] = DriveFile(micro_bytes, large=False)
    url = f"{drive.origin}/download?id={FILE_ID}"
    model = create_model("sdt3_micro", pretrained=url)
    assert torch.equal(model.head.weight, micro.head.weight)
    n = len(drive.requests)
    create_model("sdt3_micro", pretrained=url)
    assert len(drive.requests) == n
    (cached,) = files_under(cache)
    assert cached.startswith("url/") and cached.endswith("-download")


def test_hf_hub_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"sdt3-event\[hub\]"):
        create_model("sdt3_micro", pretrained="hf-hub:org/repo")


def test_hf_hub_takes_the_repos_one_checkpoint(monkeypatch, tmp_path, micro, micro_bytes):
    import types

    (tmp_path / "w.pth").write_bytes(micro_bytes)
    calls = []
    fake = types.SimpleNamespace(
        list_repo_files=lambda repo, revision=None: ["README.md", "w.pth"],
        hf_hub_download=lambda repo, f, revision=None: (
            calls.append((repo, f, revision)) or str(tmp_path / f)
        ),
    )
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    model = create_model("sdt3_micro", pretrained="hf-hub:org/repo@v1")
    assert calls == [("org/repo", "w.pth", "v1")]
    assert torch.equal(model.head.weight, micro.head.weight)
    fake.list_repo_files = lambda repo, revision=None: ["a.pth", "b.pth"]
    with pytest.raises(ValueError, match="2 checkpoint files"):
        create_model("sdt3_micro", pretrained="hf-hub:org/repo")


def test_large_tag_takes_kd_from_the_file(cache, register, monkeypatch):
    """kd is unpublished for the Large files: a head_kd in the file turns it on."""
    base = create_model("sdt3_micro")
    sd = dict(base.state_dict())
    tag = register("sdt3_micro.kd", "http://127.0.0.1:9/x", kd_from_file=True)
    assert zoo.tag_kwargs(tag, {"model": sd}) == {"kd": False}
    sd["head_kd.weight"] = torch.zeros(11, 96)
    assert zoo.tag_kwargs(tag, {"model": sd}) == {"kd": True}
