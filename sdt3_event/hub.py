"""Download files into a local cache: Google Drive aware, resumable, atomic, body-checked.

The official SDT checkpoints live on Google Drive, so :func:`download_file` speaks Drive's download
protocol, decided by what the server answers (not by its host name, so a local test server can play
Drive):

* ``…/file/d/<id>/view`` and ``…/open?id=<id>`` links become ``…/uc?export=download&id=<id>`` on the
  same origin; ``…/drive/folders/<id>`` is listed through ``…/embeddedfolderview?id=<id>`` and the
  one file matching a pattern is taken.
* A large file first answers with an HTML "can't scan for viruses" page. Its ``download-form``
  (action + hidden ``id``/``export``/``confirm``/``uuid`` inputs, the current form), an
  ``export=download&confirm=`` link (the older page) or a ``download_warning*`` cookie (the oldest
  variant) gives the real URL; cookies are kept for the session and redirects are followed.
* Drive's error pages (quota exceeded, no permission) are reported with their message.

Every download goes to a hidden ``.<name>.<pid>.part`` file next to the destination. A broken
connection resumes with an HTTP ``Range`` request (a server that ignores it restarts the body). The
first bytes are checked before anything is kept (``looks_valid``); the recorded sha256 or size and
a caller's ``verify`` hook run on the finished part file; only then is it renamed over the final
name. Any failure deletes the part file (and a later download removes those of killed
processes), so nothing partial ever sits in the cache, and raises
:class:`DownloadError` with a one-line message (offline: the URL and where to put a manually
downloaded file).
"""

from __future__ import annotations

import hashlib
import http.client
import http.cookiejar
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "SDT3_EVENT_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/sdt3_event``)."""

ProgressFn = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total_or_None)``, called after every chunk."""

_USER_AGENT = "sdt3-event (python urllib)"
_CHUNK = 1 << 20
_MAX_HOPS = 5


class DownloadError(OSError):
    """A download failed; the message is one line saying what happened and what to do next."""


def cache_dir() -> Path:
    """The cache folder: ``$SDT3_EVENT_CACHE`` or ``~/.cache/sdt3_event``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sdt3_event"


def file_sha256(path: str | os.PathLike, chunk_size: int = _CHUNK) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_checkpoint(head: bytes) -> bool:
    """True for the first bytes of a ``torch.save`` file: a zip archive or a pickle stream."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def quote_head(head: bytes, n: int = 60) -> str:
    """The first ``n`` bytes of a body as a one-line quoted string."""
    text = head[:n].decode("utf-8", "replace")
    return repr(" ".join(text.split()))


# --------------------------------------------------------------------------------------------------
# Google Drive pages


class _DrivePage(HTMLParser):
    """Collects what a Drive HTML page offers: the download form, confirm links, file entries."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form_action: str | None = None
        self.form_inputs: dict[str, str] = {}
        self.links: list[str] = []
        self.files: list[tuple[str, str]] = []  # (href, text)
        self.error = ""
        self.title = ""
        self._in_form = False
        self._anchor: str | None = None
        self._anchor_text: list[str] = []
        self._capture: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form":
            self.form_action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.form_inputs[a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self._anchor, self._anchor_text = a["href"], []
            if "export=download" in a["href"]:
                self.links.append(a["href"])
        elif tag == "title":
            self._capture = "title"
        elif "uc-error-subcaption" in a.get("class", ""):
            self._capture = "error"

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "a" and self._anchor is not None:
            self.files.append((self._anchor, " ".join("".join(self._anchor_text).split())))
            self._anchor = None
        elif tag in ("title", "p", "div"):
            self._capture = None

    def handle_data(self, data):
        if self._anchor is not None:
            self._anchor_text.append(data)
        if self._capture == "title":
            self.title += data
        elif self._capture == "error":
            self.error += data


def drive_download_url(url: str) -> str:
    """``…/file/d/<id>/view`` or ``…/open?id=<id>`` -> ``…/uc?export=download&id=<id>``.

    The origin is kept, so the same rewrite serves drive.google.com and a test server. Other URLs
    are returned unchanged.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    m = re.match(r"^(?:/u/\d+)?/file/(?:u/\d+/)?d/([-\w]+)(?:/[\w-]*)?$", parts.path)
    file_id = m.group(1) if m else None
    if file_id is None and parts.path in ("/open", "/uc"):
        ids = urllib.parse.parse_qs(parts.query).get("id")
        file_id = ids[0] if ids else None
    if file_id is None:
        return url
    query = urllib.parse.urlencode({"export": "download", "id": file_id})
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/uc", query, ""))


def _drive_folder_id(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return None
    m = re.match(r"^(?:/drive(?:/u/\d+)?)?/folders/([-\w]+)/?$", urllib.parse.urlsplit(url).path)
    return m.group(1) if m else None


def _confirm_url(page: _DrivePage, base: str, jar: http.cookiejar.CookieJar) -> str | None:
    """The URL that a Drive confirmation page points to, or None if it is not one."""
    if page.form_action is not None:
        action = urllib.parse.urljoin(base, page.form_action)
        query = urllib.parse.urlencode(page.form_inputs)
        return f"{action}{'&' if '?' in action else '?'}{query}" if query else action
    for link in page.links:
        if "confirm=" in link:
            return urllib.parse.urljoin(base, link)
    for cookie in jar:
        if cookie.name.startswith("download_warning"):
            parts = urllib.parse.urlsplit(base)
            query = dict(urllib.parse.parse_qsl(parts.query))
            if query.get("confirm") == cookie.value:
                return None
            query["confirm"] = cookie.value
            return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    return None


# --------------------------------------------------------------------------------------------------
# the client


class _Client:
    def __init__(self, timeout: float) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.timeout = timeout

    def open(self, url: str, headers: dict[str, str] | None = None):
        request = urllib.request.Request(
            url, headers={"User-Agent": _USER_AGENT, **(headers or {})}
        )
        return self.opener.open(request, timeout=self.timeout)


def _is_html(response, head: bytes) -> bool:
    ctype = response.headers.get("Content-Type", "") or ""
    return ctype.startswith("text/html") or head.lstrip()[:1] == b"<"


def _offline(url: str, dest: Path, exc: BaseException) -> DownloadError:
    reason = getattr(exc, "reason", exc)
    return DownloadError(
        f"cannot download {url} ({reason}); offline or blocked? Download it by hand and save it "
        f"as {dest}"
    )


def _resolve_folder(client: _Client, url: str, folder_id: str, pattern: str, dest: Path) -> str:
    parts = urllib.parse.urlsplit(url)
    listing = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, "/embeddedfolderview", f"id={folder_id}", "")
    )
    try:
        with client.open(listing) as response:
            text = response.read(4 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"cannot list the Drive folder {url} (HTTP {exc.code}); download the file by hand "
            f"and save it as {dest}"
        ) from None
    page = _DrivePage()
    page.feed(text)
    files = []
    for href, name in page.files:
        m = re.search(r"/file/d/([-\w]+)", href)
        if m and re.fullmatch(pattern, name):
            files.append((name, urllib.parse.urljoin(listing, href)))
    if len(files) != 1:
        names = [n for _, n in page.files] or ["nothing"]
        raise DownloadError(
            f"the Drive folder {url} holds {len(files)} file(s) matching {pattern!r} (it lists "
            f"{', '.join(names)}); download the checkpoint by hand and save it as {dest}"
        )
    logger.info("Drive folder %s: taking %s", url, files[0][0])
    return drive_download_url(files[0][1])


def _open_body(client: _Client, url: str, dest: Path, looks_valid, original: str):
    """Follow Drive's confirmation pages until a non-HTML body; return (response, head, final url).

    Messages name ``original`` (the URL the caller gave), not Drive's intermediate URLs.
    """
    seen: set[str] = set()
    for _ in range(_MAX_HOPS):
        seen.add(url)
        try:
            response = client.open(url)
        except urllib.error.HTTPError as exc:
            raise DownloadError(
                f"{original} answered HTTP {exc.code} {exc.reason}; download it by hand and save it "
                f"as {dest}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _offline(original, dest, exc) from None
        try:
            head = response.read(512)
        except (OSError, http.client.HTTPException) as exc:
            response.close()
            raise _offline(original, dest, exc) from None
        if not _is_html(response, head):
            if looks_valid is not None and not looks_valid(head):
                response.close()
                raise DownloadError(
                    f"{original} did not send a checkpoint (it starts with {quote_head(head)}); "
                    f"nothing was cached"
                )
            return response, head, response.geturl()
        body = head + response.read(1 << 20)
        response.close()
        page = _DrivePage()
        page.feed(body.decode("utf-8", "replace"))
        nxt = _confirm_url(page, response.geturl(), client.jar)
        if nxt is None or nxt in seen:
            said = " ".join(page.error.split()) or " ".join(page.title.split())
            raise DownloadError(
                f"{original} sent an HTML page, not the file"
                + (f" ({said})" if said else "")
                + f": {quote_head(body)}; nothing was cached. Open the URL in a browser, save the "
                f"file as {dest}"
            )
        logger.debug("Drive confirmation page -> %s", nxt)
        url = nxt
    raise DownloadError(f"{original}: too many confirmation pages; download it by hand to {dest}")


def _content_total(response, offset: int) -> int | None:
    crange = response.headers.get("Content-Range", "")
    m = re.match(r"bytes (\d+)-(\d+)/(\d+)", crange)
    if m:
        return int(m.group(3))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    looks_valid: Callable[[bytes], bool] | None = None,
    verify: Callable[[Path], None] | None = None,
    folder_pattern: str = r".+\.(?:pth|pt|bin|ckpt)",
    progress: ProgressFn | None = None,
    timeout: float = 60.0,
    retries: int = 5,
    backoff_s: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, resuming broken connections.

    Args:
        url: ``http(s)://`` (Google Drive file/folder links included) or ``file://``.
        dest: final path; written only once the body is complete and verified.
        sha256: expected digest (checked when given).
        size: expected size in bytes (checked when given and no ``sha256`` is).
        looks_valid: checks the first bytes (e.g. :func:`looks_like_checkpoint`); HTML bodies
            that are not Drive confirmation pages are always refused.
        verify: called with the finished part file before the rename; raising refuses the file
            (the part is deleted and the exception propagates).
        folder_pattern: for Drive folder links, the regex the wanted file name must match.
        progress: ``progress(done, total)`` after every chunk.
        timeout: socket timeout in seconds.
        retries: how many times a broken transfer is resumed.
        backoff_s: pause before the n-th resume is ``n · backoff_s``.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unreachable, HTTP error, HTML or non-checkpoint body, broken transfer after
            ``retries`` resumes, or a digest/size mismatch (one-line message).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    client = _Client(timeout)
    try:
        folder_id = _drive_folder_id(url)
        start = (
            _resolve_folder(client, url, folder_id, folder_pattern, dest)
            if folder_id
            else drive_download_url(url)
        )
        response, head, final_url = _open_body(client, start, dest, looks_valid, url)
        total = _content_total(response, 0)
        done = 0
        attempt = 0
        with open(part, "wb") as out:
            out.write(head)
            done = len(head)
            while True:
                chunk, broke = _read_chunk(response)
                if chunk:  # a write error (disk full) propagates as it is, not as a broken link
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                    continue
                response.close()
                if broke is None and (total is None or done >= total):
                    break
                attempt += 1
                if attempt > retries:
                    why = type(broke).__name__ if broke else "connection closed early"
                    raise DownloadError(
                        f"the transfer of {url} broke at {done} of {total or '?'} bytes "
                        f"{retries} times ({why}); try again later or save the file by hand as "
                        f"{dest}"
                    )
                logger.info("connection broke at %d bytes; resuming (%d)", done, attempt)
                time.sleep(backoff_s * attempt)
                response = _resume(client, final_url, done, url, dest)
                if response.status == 200:  # the server ignored Range: start over
                    out.seek(0)
                    out.truncate()
                    done = 0
                    total = _content_total(response, 0)
                else:
                    total = _content_total(response, done)
        _check_integrity(part, url, sha256, size if size is not None else total)
        if verify is not None:
            verify(part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    logger.info("downloaded %s -> %s", url, dest)
    return dest


def _remove_stale_parts(dest: Path) -> None:
    """Delete part files of ``dest`` left by processes that no longer run (killed downloads)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        pid = part.name[len(dest.name) + 2 : -len(".part")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            logger.info("removing %s (its download was killed)", part)
            part.unlink(missing_ok=True)
        except OSError:  # alive, owned by someone else
            continue


def _read_chunk(response) -> tuple[bytes, BaseException | None]:
    """The next chunk, or ``(b"", error)`` when the connection broke (``(b"", None)`` at its end)."""
    try:
        return response.read(_CHUNK), None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return b"", exc


def _resume(client: _Client, url: str, offset: int, original: str, dest: Path):
    try:
        response = client.open(url, {"Range": f"bytes={offset}-"})
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"resuming {original} failed: HTTP {exc.code} {exc.reason}; save it by hand as {dest}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _offline(original, dest, exc) from None
    if response.status == 206:
        m = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            response.close()
            raise DownloadError(
                f"resuming {original}: the server answered range "
                f"{response.headers.get('Content-Range')!r} for bytes={offset}-; save it by hand "
                f"as {dest}"
            )
    return response


def _check_integrity(path: Path, url: str, sha256: str | None, size: int | None) -> None:
    got_size = path.stat().st_size
    if sha256 is not None:
        got = file_sha256(path)
        if got != sha256.lower():
            raise DownloadError(
                f"{url}: sha256 {got} does not match the recorded {sha256}; the file was removed"
            )
    elif size is not None and got_size != size:
        raise DownloadError(
            f"{url}: got {got_size} bytes, expected {size}; the file was removed, try again"
        )


__all__ = [
    "CACHE_ENV",
    "DownloadError",
    "ProgressFn",
    "cache_dir",
    "download_file",
    "drive_download_url",
    "file_sha256",
    "looks_like_checkpoint",
    "quote_head",
]
