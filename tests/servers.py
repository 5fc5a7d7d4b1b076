"""Real HTTP servers on 127.0.0.1 for the escalation tests: llama.cpp's OpenAI-compatible server, and a mute one."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slm_desk.models.preload import refuse_if_no_model_allowed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, alias: str = "larger", keep: bool = False) -> Iterator[Any]:
    """`python -m llama_cpp.server` with a GGUF, as a user would run it; yields its /v1 base URL
    (with `keep`, the URL and the process, so a test can kill it)."""
    refuse_if_no_model_allowed(model)
    port = free_port()
    # its log goes to a file: a pipe nobody reads fills up (64 KB) and the server stops in the middle of a request
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--model_alias",
                alias,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                        if json.loads(r.read())["data"]:
                            break
                except OSError as exc:
                    if child.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"llama_cpp.server did not start: {log.read().decode()[-2000:]}") from exc
                    time.sleep(0.3)
            yield (base, child) if keep else base
        finally:
            child.terminate()
            child.wait(timeout=30)


@contextlib.contextmanager
def mute_server(asked: threading.Event | None = None) -> Iterator[str]:
    """Accepts connections and never answers: what a hung endpoint looks like. `asked` is set once the first
    request's bytes have arrived, so a test can act while a request is in flight instead of sleeping."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])
                if asked is not None and not asked.is_set():
                    held[-1].settimeout(30)
                    if held[-1].recv(1, socket.MSG_PEEK):
                        asked.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@contextlib.contextmanager
def serving(handler: type) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port with this request handler; yields its /v1 base URL."""
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)  # quick stop
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


BAD_BODIES = {
    "empty list": b"[]",
    "null choices": b'{"choices": null}',
    "null message": b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m",'
    b' "choices": [{"index": 0, "finish_reason": "stop", "message": null}]}',
    "short body": b'{"choices": [',  # sent with a Content-Length that promises more
    "reset": b"",  # the connection is reset instead of answered
    "not json": b"<html>oops</html>",
    "prose answer": b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m",'
    b' "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Sure!"}}]}',
}


@contextlib.contextmanager
def misbehaving_server(kind: str) -> Iterator[str]:
    """Answers every request with one kind of broken reply (see BAD_BODIES); yields its /v1 base URL."""
    import http.server
    import struct

    body = BAD_BODIES[kind]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if kind == "reset":  # SO_LINGER 0: close() sends RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + (100 if kind == "short body" else 0)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if kind == "short body":
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url


@contextlib.contextmanager
def picky_server(
    rejection: bytes, answer: str = '{"route": "card_issue"}', refuse_logprobs: bool = False
) -> Iterator[tuple[str, list[str]]]:
    """An OpenAI-compatible server that refuses `response_format` json_schema with HTTP 500 and `rejection` as
    the body (llama-cpp-python 0.3.36's server says "Input should be 'text' or 'json_object'"; some say nothing),
    and answers anything else with `answer` after a short think; with `refuse_logprobs`, a request that asks for
    logprobs gets a 400 saying so first. Yields its /v1 URL and the forms it was asked in."""
    import http.server

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            form = (request.get("response_format") or {}).get("type", "none")
            asked.append(form)
            time.sleep(0.05)  # long enough for requests in flight to overlap
            if refuse_logprobs and request.get("logprobs"):
                asked[-1] += "+logprobs"
                status, body = 400, b'{"error": {"message": "logprobs are not supported by this server"}}'
            elif form == "json_schema":
                status, body = 500, rejection
            else:
                status = 200
                body = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "picky",
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, asked
