"""The downloader (:mod:`sdt3_event.hub`) against a local server that answers like Google Drive."""

from __future__ import annotations

import hashlib
import os

import pytest
from drive_server import DriveFile, DriveServer, files_under, one_line

from sdt3_event.hub import DownloadError, download_file

FILE_ID = "1someLargeFileId000000000000"


@pytest.fixture
def drive():
    with DriveServer() as d:
        yield d


@pytest.fixture(scope="module")
def body():
    return b"PK\x03\x04" + os.urandom(300_000)  # a torch file starts like a zip archive


@pytest.mark.parametrize("variant", ["link", "cookie"])
def test_older_confirmation_pages(drive, tmp_path, body, variant):
    drive.files[FILE_ID] = DriveFile(body, variant=variant)
    dest = download_file(drive.view_url(FILE_ID), tmp_path / "x.pth")
    assert dest.read_bytes() == body
    assert [p for p, _ in drive.requests] == ["/uc", "/download", "/download"]


def test_broken_connection_resumes_with_range(drive, tmp_path, body):
    drive.files[FILE_ID] = DriveFile(body, cut=True)
    dest = tmp_path / "c" / "x.pth"
    download_file(drive.view_url(FILE_ID), dest, backoff_s=0)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(body).digest()
    ranges = [r for _, r in drive.requests if r]
    assert ranges == [f"bytes={len(body) // 2}-"]
    assert files_under(tmp_path / "c") == ["x.pth"]


def test_part_files_of_killed_downloads_are_cleaned(drive, tmp_path, body):
    drive.files[FILE_ID] = DriveFile(body, large=False)
    stale = tmp_path / ".x.pth.999999999.part"  # no such process
    stale.write_bytes(b"half")
    download_file(drive.view_url(FILE_ID), tmp_path / "x.pth")
    assert files_under(tmp_path) == ["x.pth"]


def test_a_transfer_that_keeps_breaking_gives_up_in_one_line(drive, tmp_path, body):
    drive.files[FILE_ID] = DriveFile(body, cut_always=True)
    with pytest.raises(DownloadError, match="broke at .* 2 times") as info:
        download_file(drive.view_url(FILE_ID), tmp_path / "x.pth", retries=2, backoff_s=0)
    one_line(info.value)
    assert len([r for _, r in drive.requests if r]) == 2
    assert files_under(tmp_path) == []


def test_server_ignoring_range_restarts_the_body(drive, tmp_path, body):
    drive.files[FILE_ID] = DriveFile(body, cut=True, norange=True)
    dest = tmp_path / "x.pth"
    download_file(drive.view_url(FILE_ID), dest, backoff_s=0)
    assert dest.read_bytes() == body
