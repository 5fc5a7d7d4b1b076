"""A Hugging Face hub on 127.0.0.1, answering the endpoints huggingface_hub uses to download one file.

HEAD and GET on /<org>/<repo>/resolve/<revision>/<file> with ETag (the LFS sha256), X-Repo-Commit,
Content-Length and Range, plus the hub's X-Error-Code answers for missing repos, missing files and gated
repos. Files can be served corrupted, cut off half-way on the first transfer, or slowly.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 256 * 1024


@dataclass
class HubFile:
    data: bytes
    sha256: str = ""  # what the hub claims (ETag); defaults to the real hash
    cut_first_transfer: bool = False
    bytes_per_second: float | None = None
    stall_probe: bool = False  # send the headers of the header probe (a Range request), then nothing
    transfers: int = 0

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def add(self, repo: str, filename: str, file: HubFile) -> HubFile:
        self.files[(repo, filename)] = file
        return file

    def downloads(self) -> list[str | None]:
        """The Range header of every full-file GET (None for a transfer from byte 0)."""
        return [
            r
            for method, path, r in self.log
            if method == "GET" and "/resolve/" in path and (r is None or not r.startswith("bytes=0-"))
        ]

    def file_requests(self) -> list[str]:
        return [method for method, path, _ in self.log if "/resolve/" in path]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _lookup(self) -> HubFile | None:
            parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            if repo in hub.gated:
                self._error(403, "GatedRepo", "Access to this model is restricted")
                return None
            if not any(r == repo for r, _ in hub.files):
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            if (repo, filename) not in hub.files:
                self._error(404, "EntryNotFound", "Entry not found")
                return None
            return hub.files[(repo, filename)]

        def _headers(self, file: HubFile, status: int, start: int, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{file.sha256}"')
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(len(file.data)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{len(file.data)}")
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802
            hub.log.append(("HEAD", self.path, None))
            file = self._lookup()
            if file:
                self._headers(file, 200, 0, len(file.data))

        def do_GET(self) -> None:  # noqa: N802
            wanted = self.headers.get("Range")
            hub.log.append(("GET", self.path, wanted))
            file = self._lookup()
            if not file:
                return
            start, end = 0, len(file.data) - 1
            if wanted:
                first, _, last = wanted.removeprefix("bytes=").partition("-")
                start, end = int(first), min(int(last) if last else end, end)
            body = file.data[start : end + 1]
            self._headers(file, 206 if wanted else 200, start, len(body))
            if file.stall_probe and wanted and start == 0:
                self.wfile.flush()
                time.sleep(60)
                return
            is_transfer = not wanted or start > 0
            cut = file.cut_first_transfer and is_transfer and file.transfers == 0
            if is_transfer:
                file.transfers += 1
            limit = len(body) // 2 if cut else len(body)
            for offset in range(0, limit, CHUNK):
                try:
                    self.wfile.write(body[offset : min(offset + CHUNK, limit)])
                except (BrokenPipeError, ConnectionResetError):
                    return
                if file.bytes_per_second:
                    time.sleep(CHUNK / file.bytes_per_second)
            if cut:
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()

    return Handler


def serve() -> tuple[FakeHub, ThreadingHTTPServer]:
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for the loop's next poll: 0.5 s by default, paid by every test that stops a hub
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return hub, server
