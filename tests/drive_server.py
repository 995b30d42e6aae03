"""A local HTTP server on 127.0.0.1 that answers like Google Drive, for the download tests.

* ``/uc?export=download&id=ID`` redirects (303) to ``/download?id=ID&export=download``, as Drive
  now does. For a "large" file that answers with the virus-scan page: a ``download_warning`` cookie
  and a ``download-form`` whose hidden ``confirm`` token and ``uuid`` must come back, with the
  cookie, before the file is sent (``variant="link"``: the older ``confirm=`` link instead of the
  form; ``variant="cookie"``: only the cookie carries the token).
* ``/embeddedfolderview?id=FOLDER`` lists a folder as Drive's embedded view does.
* Per-file behaviours: ``cut`` sends a full Content-Length, half the body, then drops the
  connection, and answers the next ``Range`` request with 206; ``html`` answers with a Drive
  error page; ``norange`` ignores Range.

Every request is recorded in ``server.requests`` (path, Range header).
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from dataclasses import dataclass, field

TOKEN = "tok3n"
UUID = "0b5e-uuid"


@dataclass
class DriveFile:
    body: bytes
    name: str = "checkpoint.pth"
    large: bool = True
    cut: bool = False
    cut_always: bool = False  # every response, ranged or not, stops halfway
    html: bool = False
    norange: bool = False
    variant: str = "form"  # the confirmation page: "form" (today), "link" or "cookie" (older)
    served_cut: bool = False


@dataclass
class FakeDrive:
    files: dict[str, DriveFile] = field(default_factory=dict)
    folders: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def view_url(self, file_id: str) -> str:
        return f"{self.origin}/file/d/{file_id}/view?usp=sharing"

    def folder_url(self, folder_id: str) -> str:
        return f"{self.origin}/drive/folders/{folder_id}?usp=sharing"


def _handler(drive: FakeDrive):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code, body=b"", headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))
            drive.requests.append((parts.path, self.headers.get("Range")))
            if parts.path == "/uc":
                target = f"/download?id={query.get('id', '')}&export=download"
                return self._send(303, headers=[("Location", target)])
            if parts.path == "/embeddedfolderview":
                return self._folder(query.get("id", ""))
            if parts.path == "/download":
                return self._download(query)
            return self._send(404, b"<html><title>Not Found</title></html>")

        def _folder(self, folder_id):
            if folder_id not in drive.folders:
                return self._send(404, b"<html><title>Error 404</title></html>")
            entries = "".join(
                f'<div class="flip-entry" id="entry-{fid}"><a href="{drive.view_url(fid)}" '
                f'target="_blank"><div class="flip-entry-info"><div class="flip-entry-title">'
                f"{drive.files[fid].name}</div></div></a></div>"
                for fid in drive.folders[folder_id]
            )
            page = f"<html><head><title>folder</title></head><body>{entries}</body></html>"
            self._send(200, page.encode(), [("Content-Type", "text/html; charset=utf-8")])

        def _download(self, query):
            f = drive.files.get(query.get("id", ""))
            if f is None:
                return self._send(404, b"<html><title>Not Found</title></html>")
            if f.html:
                page = (
                    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>"
                    b'</head><body><p class="uc-error-subcaption">Too many users have viewed or '
                    b"downloaded this file recently.</p></body></html>"
                )
                return self._send(200, page, [("Content-Type", "text/html; charset=utf-8")])
            cookie = self.headers.get("Cookie", "")
            confirmed = (
                query.get("confirm") == TOKEN
                and (query.get("uuid") == UUID or f.variant != "form")
                and f"download_warning_13058876669334088843_{query['id']}={TOKEN}" in cookie
            )
            if f.large and not confirmed:
                offer = {
                    "link": f'<a id="uc-download-link" href="/download?export=download&amp;'
                    f'confirm={TOKEN}&amp;id={query["id"]}">Download anyway</a>',
                    "cookie": "<p>Download anyway.</p>",
                }
                page = (
                    "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>"
                    "</head><body><p>Google Drive can't scan this file for viruses.</p>"
                    '<form id="download-form" action="/download" method="get">'
                    '<input type="submit" id="uc-download-link" value="Download anyway"/>'
                    f'<input type="hidden" name="id" value="{query["id"]}">'
                    '<input type="hidden" name="export" value="download">'
                    f'<input type="hidden" name="confirm" value="{TOKEN}">'
                    f'<input type="hidden" name="uuid" value="{UUID}"></form></body></html>'
                ).encode()
                if f.variant in offer:
                    page = f"<html><body>{offer[f.variant]}</body></html>".encode()
                cookie_header = (
                    f"download_warning_13058876669334088843_{query['id']}={TOKEN}; Path=/"
                )
                return self._send(
                    200,
                    page,
                    [("Content-Type", "text/html; charset=utf-8"), ("Set-Cookie", cookie_header)],
                )
            body = f.body
            rng = self.headers.get("Range")
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", f'attachment; filename="{f.name}"'),
            ]
            if rng and not f.norange:
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                rest = body[start:]
                self.wfile.write(rest[: len(rest) // 2] if f.cut_always else rest)
                self.close_connection = f.cut_always
                return
            if f.cut_always or (f.cut and not f.served_cut):
                f.served_cut = True
                self.send_response(200)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, body, headers)

    return Handler


class DriveServer:
    """Context manager running :class:`FakeDrive` on an ephemeral port in a thread."""

    def __init__(self) -> None:
        self.drive = FakeDrive()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.drive))
        self.drive.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeDrive:
        self.thread.start()
        return self.drive

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def official_bytes(model) -> bytes:
    """``model``'s weights in the official container layout (``{"model": ..., "args": ...}``)."""
    import argparse
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, buf)
    return buf.getvalue()


def tag_registrar(monkeypatch):
    """``add(name, url, **fields)`` registering ``sdt3_micro`` test tags for one test only."""
    from sdt3_event.models import zoo

    monkeypatch.setattr(zoo, "_TAGS", dict(zoo._TAGS))
    monkeypatch.setattr(zoo, "_DEFAULT", dict(zoo._DEFAULT))

    def add(name: str, url: str, **kw):
        kw = {"input_size": (2, 64, 64), "mean": None, "std": None, **kw}
        return zoo.register_pretrained(zoo.PretrainedTag(name, url, "test", "micro", **kw))

    return add


def files_under(root) -> list[str]:
    """Every file below ``root`` (relative, sorted); [] when ``root`` does not exist."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def one_line(exc: BaseException) -> str:
    """``str(exc)``, asserting it is a single line (the project's rule for user-facing errors)."""
    text = str(exc)
    assert "\n" not in text, text
    return text
