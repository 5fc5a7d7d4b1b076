"""Pipe mode's inputs: stdin's lines, each parsed into an input or the error that line gets, handed on in batches
of what has arrived so far (a slow producer still streams, and nothing waits on a line not yet written)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import IO, Any

from slm_desk.errors import SlmDeskError, UsageError


def read_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"the input is not UTF-8 text (bad byte at offset {exc.start})", "pass plain UTF-8 text"
        ) from exc


def _fd_lines(fd: int) -> Iterator[bytes]:
    """The lines of a file descriptor, read with os.read: no Python buffer lock is held while it waits, so an
    interpreter that exits (Ctrl-C, SIGTERM) while a producer keeps the pipe open never waits on this thread."""
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's BytesIO): its own lines
        return iter(stream)
    return _fd_lines(fd)


def jsonl_inputs(stream: IO[bytes]) -> Iterator[tuple[int, Any, str | SlmDeskError]]:
    """(line number, id, text or the error for that line), read lazily so a batch streams."""
    for number, raw in enumerate(_lines(stream), 1):
        try:
            line = read_text(raw).strip()
        except UsageError as exc:
            yield number, None, exc
            continue
        if not line:
            continue
        if line.startswith("[") and _is_json_array(line):
            yield (
                number,
                None,
                UsageError(
                    f"line {number} is a JSON array, not an input", 'write {"input": "..."} or plain text, one per line'
                ),
            )
            continue
        if not line.startswith("{"):
            yield number, None, line
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield (
                number,
                None,
                UsageError(f"line {number} is not valid JSON: {exc.msg}", 'write {"input": "..."} or plain text'),
            )
            continue
        text = item.get("input") if isinstance(item, dict) else None
        if not isinstance(text, str):
            yield number, None, UsageError(f'line {number} has no string "input" field', 'write {"input": "..."}')
        elif not text.strip():
            yield (
                number,
                item.get("id"),
                UsageError(f"line {number} has an empty input", 'give it text: {"input": "..."}'),
            )
        else:
            yield number, item.get("id"), text


IDLE_S = 0.1  # while no line arrives, answers already done are printed this often (stdin held open)


def arrived(stream: IO[bytes], most: int) -> Iterator[list[tuple[int, Any, str | SlmDeskError]]]:
    """The parsed lines in batches of what has arrived so far, read by a thread so a batch never waits for a line
    that has not been written yet. While nothing arrives it yields an empty batch every IDLE_S, so answers that
    finished meanwhile are printed without waiting for the next line."""
    import queue
    import threading

    lines: queue.Queue[Any] = queue.Queue(maxsize=4 * most)
    end = object()

    def read() -> None:
        try:
            for parsed in jsonl_inputs(stream):
                lines.put(parsed)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            lines.put(exc)
        lines.put(end)

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    while True:
        try:
            batch = [lines.get(timeout=IDLE_S)]
        except queue.Empty:
            yield []
            continue
        while len(batch) < most:
            try:
                batch.append(lines.get_nowait())
            except queue.Empty:
                break
        finished = batch[-1] is end
        items = [b for b in batch if b is not end]
        for item in items:
            if isinstance(item, BaseException):
                raise item
        if items:
            yield items
        if finished:
            return


def _is_json_array(line: str) -> bool:
    try:
        return isinstance(json.loads(line), list)
    except ValueError:
        return False  # "[ticket 4411] my card ..." is text
