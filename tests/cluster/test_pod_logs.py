"""The pod log API, streamed: chunks as they come, nothing left behind when the reader stops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import ApiClient, Configuration

from app.cluster.logs import LogNotFound, LogRefused, PodLogs
from app.workloads.logs import limited


class LogServer:
    """A stand-in for the API server's pod log endpoint: a line every 10 ms, for ever
    (``follow``), or three lines; 404 for pod ``gone``, 400 for ``previous``."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.open_streams = 0
        self.ended = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                outer.requests.append(self.path)
                if "/pods/gone/" in self.path:
                    return self._status(404, "pods gone not found")
                if "previous=True" in self.path or "previous=true" in self.path:
                    return self._status(400, "previous terminated container not found")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                follow = "follow=True" in self.path or "follow=true" in self.path
                outer.open_streams += 1
                try:
                    i = 0
                    while follow or i < 3:
                        line = b"line %d\n" % i
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                        i += 1
                        time.sleep(0.01)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the reader went away
                finally:
                    outer.open_streams -= 1
                    outer.ended.set()

            def _status(self, code: int, message: str) -> None:
                body = b'{"kind":"Status","message":"%s"}' % message.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self) -> ApiClient:
        configuration = Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return ApiClient(configuration)


@pytest.fixture
def server() -> Iterator[LogServer]:
    s = LogServer()
    yield s
    s.server.shutdown()


def _open(logs: PodLogs, pod: str = "p", **options: Any) -> Any:
    defaults: dict[str, Any] = {
        "namespace": "ns",
        "pod": pod,
        "container": "main",
        "follow": False,
        "tail_lines": None,
        "since_seconds": None,
        "timestamps": False,
        "previous": False,
        "limit_bytes": 1000,
    }
    return logs.open(**{**defaults, **options})


async def _read(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


def test_a_log_is_read_to_its_end_with_the_options_passed_on(server: LogServer) -> None:
    logs = PodLogs(server.client())

    async def run() -> bytes:
        return await _read(await _open(logs, tail_lines=5, timestamps=True))

    assert asyncio.run(run()) == b"line 0\nline 1\nline 2\n"
    (path,) = server.requests
    assert path.startswith("/api/v1/namespaces/ns/pods/p/log?")
    for option in ("container=main", "tailLines=5", "timestamps=true", "limitBytes=1000"):
        assert option in path


def test_problems_are_raised_before_anything_streams(server: LogServer) -> None:
    logs = PodLogs(server.client())
    with pytest.raises(LogNotFound, match="gone"):
        asyncio.run(_open(logs, pod="gone"))
    with pytest.raises(LogRefused, match="previous terminated container"):
        asyncio.run(_open(logs, previous=True))


def test_a_followed_log_stops_when_the_reader_does_and_leaves_nothing_behind(
    server: LogServer,
) -> None:
    logs = PodLogs(server.client())
    threads = threading.active_count()

    async def run() -> bytes:
        # limited() closes the stream once it has its bytes, as a client that goes away does.
        stream = limited(await _open(logs, follow=True), 30)
        return await _read(stream)

    received = asyncio.run(run())
    assert len(received) == 30
    assert received.startswith(b"line 0\nline 1\n")
    assert server.ended.wait(5), "the server still streams to nobody"
    assert server.open_streams == 0
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads, "a thread is left reading"
