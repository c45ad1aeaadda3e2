"""Shared base for the loopback stand-ins: one threaded HTTP server, fault injection and a process runner.

Every stand-in (Farcaster hub, Reddit, Solana, OpenAI, ...) is a `StubServer` subclass that only
implements `handle(request) -> Response`. The base owns what they have in common, so that it behaves
the same everywhere:

- a `ThreadingHTTPServer` on 127.0.0.1 (port 0 picks a free port) in a background thread, with
  `start()` / `stop()` and use as a context manager; HTTP/1.1 keep-alive, because httpx and requests
  reuse connections and a server that closes every one hides connection-pool bugs;
- faults queued from Python (`inject_fault`) or over HTTP (`POST /_devnet/fault`), so a test can
  break a stand-in that runs in another process: `429` (with Retry-After), `500`, `slow` (answer late),
  `truncated` (half of the real JSON body, with a consistent Content-Length), `disconnect`;
- a request log (`requests`, `request_count`) so tests can count calls and retries;
- `serve_until_signal` / `StubProcess` to run a stand-in as `python -m devnet.<name>` and drive it.

Control endpoints (never faulted, never authenticated):
`GET /_devnet/health`, `GET|POST|DELETE /_devnet/fault`, `GET /_devnet/requests`, plus whatever a
subclass adds in `handle_control`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

CONTROL_PREFIX = "/_devnet/"

# Accepted spellings of each fault kind; the OpenAI stand-in's names are aliases so one control
# protocol drives every stand-in.
FAULT_KINDS: dict[str, str] = {
    "429": "429",
    "rate_limit": "429",
    "500": "500",
    "server_error": "500",
    "slow": "slow",
    "truncated": "truncated",
    "truncate": "truncated",
    "disconnect": "disconnect",
}
DEFAULT_RETRY_AFTER = 1.0  # seconds
DEFAULT_SLOW_DELAY = 1.0  # seconds


# ---------------------------------------------------------------------------------------------------
# Plain values: request, response, fault, log entry.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One parsed request as a subclass sees it: no socket, no handler object."""

    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: Message
    body: bytes
    raw_path: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header, case-insensitively."""
        value = self.headers.get(name)
        return default if value is None else str(value)

    def json(self) -> Any:
        """The body parsed as JSON (`{}` when empty); `HttpError` 400 when it is not JSON."""
        try:
            return json.loads(self.body or b"{}")
        except ValueError as err:
            raise HttpError(Response.json({"error": f"body is not JSON: {err}"}, 400)) from err

    def form(self) -> dict[str, str]:
        """The body as an `application/x-www-form-urlencoded` form, first value of each field."""
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}


@dataclass
class Response:
    """What a handler answers: status, body bytes and headers (Content-Length is added for you)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        # Compact separators: large pages (a thousand casts) serialise noticeably faster and smaller.
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


class HttpError(Exception):
    """Raised by a handler to answer with `response` instead of returning normally."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


@dataclass
class Fault:
    """A fault answered to the next `remaining` requests whose path starts with `path_prefix`."""

    kind: str
    remaining: int = 1
    path_prefix: str | None = None  # None: every non-control path
    retry_after: float = DEFAULT_RETRY_AFTER  # seconds, for 429
    delay: float = DEFAULT_SLOW_DELAY  # seconds, for slow

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class RecordedRequest:
    """One request as the stand-in saw it, for tests that count calls, retries or headers."""

    method: str
    path: str
    query: str
    status: int  # 0 when the connection was dropped
    fault: str | None
    user_agent: str | None
    at: float = field(default_factory=time.time)


# ---------------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a client that opens more connections at once (solana-py
    # with concurrent requests) has SYNs dropped and stalls for a 1 s retransmit. Real nodes queue more.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a killed worker, a timed-out call) is routine here, not
        a traceback on the console; anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):  # reset, broken pipe, aborted
            return
        super().handle_error(request, client_address)


@dataclass
class RpcFault:
    """A JSON-RPC error fault: answer the next `remaining` calls (of `method`, or any) with this error."""

    remaining: int
    method: str | None = None
    code: int = -32005
    message: str = "devnet fault"
    data: Any = None


class RpcFaults:
    """The pending JSON-RPC error faults of a JSON-RPC stand-in (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[RpcFault] = []

    def add(self, fault: RpcFault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str) -> RpcFault | None:
        """The fault that answers this call, if any (spending one of its uses)."""
        with self._lock:
            for fault in self._faults:
                if fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[RpcFault]:
        with self._lock:
            return list(self._faults)


class StubServer:
    """A loopback HTTP stand-in. Subclasses implement `handle`; see the module docstring.

    `start()` returns the server so `with Hub(...).start() as hub` and `hub = Hub().start()` both read
    naturally; `stop()` also drops open keep-alive connections so a stopped stand-in looks stopped.
    """

    name: ClassVar[str] = "stub"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requests: deque[RecordedRequest] = deque(maxlen=20_000)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes `slow` handlers so stop() never waits on them
        self._connections: set[socket.socket] = set()
        self._server = _Server((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:43117`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            # A short poll interval: shutdown() waits for the loop to notice, and tests stop servers often.
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name=f"devnet-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ----------------------------------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        path_prefix: str | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> Fault:
        """Answer the next `count` requests under `path_prefix` (None: any path) with a fault.

        Kinds: `429` (Retry-After: `retry_after` seconds, default 1), `500`, `slow` (wait `delay`
        seconds, default 1, then answer normally), `truncated` (the first half of the real body, with
        a Content-Length that matches, so the client sees broken JSON rather than a broken
        connection), `disconnect` (close without answering). Faults queue in order; the first one
        whose prefix matches is used.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(
            FAULT_KINDS[kind],
            count,
            path_prefix,
            DEFAULT_RETRY_AFTER if retry_after is None else float(retry_after),
            DEFAULT_SLOW_DELAY if delay is None else float(delay),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def request_count(self, path_prefix: str | None = None) -> int:
        """How many requests (faulted or not, control endpoints excluded) reached `path_prefix`."""
        return sum(1 for r in list(self.requests) if path_prefix is None or r.path.startswith(path_prefix))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return Fault(**asdict(fault))
        return None

    # --- what subclasses override ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one non-control request. The base answers 404 to everything."""
        return Response.json({"error": f"no route for {request.method} {request.path}"}, 404)

    def handle_control(self, request: Request) -> Response | None:
        """Extra `/_devnet/*` endpoints of a subclass (e.g. add data at run time); None: not mine."""
        return None

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The body and headers of an injected 429 or 500, in the protocol's own error shape."""
        if fault.kind == "429":
            return Response.json({"error": "rate limited (devnet fault)"}, 429, retry_after_headers(fault))
        return Response.json({"error": "internal server error (devnet fault)"}, 500)

    def describe(self) -> dict[str, Any]:
        """What `GET /_devnet/health` reports besides the name; subclasses add dataset counts."""
        return {}

    # --- request path (runs on handler threads) --------------------------------------------------

    def _serve(self, request: Request) -> tuple[Response | None, Fault | None]:
        """The response for one request and the fault applied, if any. None: drop the connection."""
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request), None
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.kind in ("429", "500"):
                return self.fault_response(fault, request), fault
            if fault.kind == "disconnect":
                return None, fault
            if fault.kind == "slow":
                self._stopping.wait(fault.delay)
        response = self._handle_safely(request)
        if fault is not None and fault.kind == "truncated":
            response = Response(response.status, response.body[: len(response.body) // 2], response.headers)
        return response, fault

    def _handle_safely(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except HttpError as err:
            return err.response
        except Exception as err:  # a bug in a stand-in: say so loudly, answer like a broken server
            traceback.print_exc()
            return Response.json({"error": f"devnet {self.name} crashed: {err!r}"}, 500)

    def _control(self, request: Request) -> Response:
        try:
            own = self.handle_control(request)
            if own is not None:
                return own
            return self._base_control(request)
        except HttpError as err:
            return err.response

    def _base_control(self, request: Request) -> Response:
        method, path = request.method, request.path.rstrip("/")
        if path == "/_devnet/health" and method == "GET":
            return Response.json({"ok": True, "name": self.name, **self.describe()})
        if path == "/_devnet/fault" and method == "POST":
            spec = request.json()
            if not isinstance(spec, dict):
                return Response.json({"error": "expected a JSON object"}, 400)
            try:
                self.inject_fault(
                    str(spec.get("kind", "")),
                    int(spec.get("count", 1)),
                    spec.get("path_prefix"),
                    spec.get("retry_after"),
                    spec.get("delay"),
                )
            except (TypeError, ValueError) as err:
                return Response.json({"error": str(err)}, 400)
            return Response.json({"faults": [asdict(f) for f in self.pending_faults()]})
        if path == "/_devnet/fault" and method == "GET":
            return Response.json({"faults": [asdict(f) for f in self.pending_faults()]})
        if path == "/_devnet/fault" and method == "DELETE":
            self.clear_faults()
            return Response.json({"faults": []})
        if path == "/_devnet/requests" and method == "GET":
            return Response.json({"requests": [asdict(r) for r in list(self.requests)]})
        return Response.json({"error": f"unknown devnet control URL: {method} {request.path}"}, 404)


def retry_after_headers(fault: Fault) -> dict[str, str]:
    """Retry-After in whole seconds (what most clients read) and in ms (what OpenAI's client prefers)."""
    return {
        "Retry-After": str(max(0, math.ceil(fault.retry_after))),
        "retry-after-ms": str(max(0, round(fault.retry_after * 1000))),
    }


def _handler_class(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.stub = stub
    return Handler


class _Handler(BaseHTTPRequestHandler):
    """Turns the socket-level request into a `Request`, and a `Response` back into bytes."""

    protocol_version = "HTTP/1.1"
    server_version = "devnet/1"
    # Without TCP_NODELAY a small response written after its headers waits ~40 ms for a delayed ACK;
    # paging thousands of items would crawl.
    disable_nagle_algorithm = True
    stub: StubServer

    def setup(self) -> None:
        super().setup()
        with self.stub._lock:
            self.stub._connections.add(self.connection)

    def finish(self) -> None:
        with self.stub._lock:
            self.stub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            raw_path=self.path,
        )
        response, fault = self.stub._serve(request)
        if not request.path.startswith(CONTROL_PREFIX):
            self.stub.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    split.query,
                    0 if response is None else response.status,
                    None if fault is None else fault.kind,
                    request.header("User-Agent"),
                )
            )
        if response is None:
            self.close_connection = True
            return
        try:
            self.send_response(response.status, _phrase(response.status))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:  # the client gave up (e.g. its timeout fired during a slow fault)
            self.close_connection = True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------------------
# Running a stand-in as a process, and driving one that runs elsewhere.
# ---------------------------------------------------------------------------------------------------


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """`--host` and `--port`, the same for every stand-in's command line."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")


def serve_until_signal(server: StubServer) -> int:
    """Start `server`, print `listening on <url>` (the line `StubProcess` waits for), serve until
    SIGTERM or SIGINT, then stop cleanly and return 0."""
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    print(f"listening on {server.url}", flush=True)
    try:
        while not done.wait(0.1):  # a timed wait so signals are handled promptly on every platform
            pass
    finally:
        server.stop()
    return 0


_LISTENING_RE = re.compile(r"listening on (http://\S+)")


class StubProcess:
    """A stand-in running as a child process (`python -m devnet.<module> ...`), as the manager's
    `--devnet` mode runs them. `start()` waits for the `listening on` line and knows the URL."""

    def __init__(self, module: str, args: Sequence[str] = (), *, python: str = sys.executable) -> None:
        self.module = module
        self.args = list(args)
        self.python = python
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> Self:
        from manager.process import die_with_parent

        self.process = subprocess.Popen(
            [self.python, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            text=True,
            # SIGKILL, not SIGTERM: a stand-in holds nothing worth a graceful stop, and a graceful
            # HTTP server shutdown can wait on a client's open keep-alive connection.
            preexec_fn=die_with_parent(os.getpid(), signal.SIGKILL),  # no stand-in outlives the manager
        )
        line_holder: list[str] = []
        reader = threading.Thread(target=lambda: line_holder.append(self._stdout_line()), daemon=True)
        reader.start()
        reader.join(timeout)
        match = _LISTENING_RE.search(line_holder[0]) if line_holder else None
        if match is None:
            self.stop()
            raise RuntimeError(f"{self.module} did not print 'listening on' within {timeout} s")
        self.url = match.group(1)
        return self

    def _stdout_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.readline()

    def inject_fault(self, kind: str, count: int = 1, path_prefix: str | None = None, **extra: Any) -> Any:
        return inject_remote_fault(self.url, kind, count, path_prefix, **extra)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def control_request(url: str, method: str, path: str, payload: Any = None, timeout: float = 5.0) -> Any:
    """Call a `/_devnet/*` control endpoint of a stand-in at base `url`; returns the decoded JSON."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def inject_remote_fault(url: str, kind: str, count: int = 1, path_prefix: str | None = None, **extra: Any) -> Any:
    """`inject_fault` for a stand-in in another process (extra: `retry_after`, `delay`)."""
    spec = {"kind": kind, "count": count, "path_prefix": path_prefix, **extra}
    return control_request(url, "POST", "/_devnet/fault", spec)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devnet.http_stub --port N`: a bare stand-in (health, faults, 404 elsewhere), handy for
    trying a client's error handling by hand."""
    parser = argparse.ArgumentParser(prog="python -m devnet.http_stub", description=main.__doc__)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    return serve_until_signal(StubServer(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
