"""A loopback stand-in for the Gemini API: canned answers for ``generateContent``, every request recorded.

The real google-genai client is pointed at it with ``HttpOptions(base_url=stub.base_url)``; nothing is patched.
``stop()`` closes the socket, so a later call meets a refused connection (the "VLM switched off" case).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Canned", "Recorded", "VlmStub", "answer", "running_stub", "start_stub"]

_ROUTE = re.compile(r"^/(?P<version>v1\w*)/models/(?P<model>[^/:]+):generateContent$")


@dataclass(frozen=True, slots=True)
class Canned:
    """One canned HTTP answer: a status and a JSON body (dict) or raw text (str)."""

    status: int
    body: Mapping[str, object] | str


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the stub received."""

    path: str
    version: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]


def answer(text: str, *, status: int = 200) -> Canned:
    """Return a ``generateContent`` success whose only part is ``text`` (what ``response.text`` will be)."""
    return Canned(
        status,
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "stub",
        },
    )


@dataclass
class VlmStub:
    """The running stub. Queue answers with ``push``; read ``requests`` afterwards."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    queue: deque[Canned] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (valid after ``stop()`` too, but nothing listens there any more)."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *answers: Canned) -> None:
        """Queue answers, served first in, first out; an empty queue answers 418 so a missing answer is obvious."""
        self.queue.extend(answers)

    def stop(self) -> None:
        """Shut the server down and close its socket (idempotent)."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)


def _make_handler(stub_ref: list[VlmStub]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            return

        def do_POST(self) -> None:
            stub = stub_ref[0]
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            match = _ROUTE.match(self.path)
            if match is None:
                self._send(Canned(404, {"error": {"code": 404, "message": f"no route {self.path}"}}))
                return
            stub.requests.append(
                Recorded(
                    path=self.path,
                    version=match["version"],
                    model=match["model"],
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                )
            )
            canned = stub.queue.popleft() if stub.queue else Canned(418, {"error": {"message": "no canned answer"}})
            self._send(canned)

        def _send(self, canned: Canned) -> None:
            if isinstance(canned.body, str):
                payload, kind = canned.body.encode(), "text/plain"
            else:
                payload, kind = json.dumps(canned.body).encode(), "application/json"
            self.send_response(canned.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def start_stub() -> VlmStub:
    """Start a stub on 127.0.0.1 at a free port, served from a daemon thread."""
    holder: list[VlmStub] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(holder))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="vlm-stub", daemon=True)
    stub = VlmStub(server, thread)
    holder.append(stub)
    thread.start()
    return stub


@contextmanager
def running_stub() -> Iterator[VlmStub]:
    """A stub for the duration of a ``with`` block (the test files wrap it in a fixture)."""
    stub = start_stub()
    try:
        yield stub
    finally:
        stub.stop()
