"""The device agent: a small HTTP server on the device you deploy to that times model files.

    POST /v1/measure?runs=30&warmup=5&threads=1   body: the model file (ONNX, or .tflite for litert)
    GET  /health                                  fingerprint, backend, runtime version, queue length

Every request needs ``Authorization: Bearer <token>`` (compared in constant time). One model is measured
at a time: concurrent requests wait their turn, because two models timed together slow each other down.
The work one request can ask for is bounded: capped run counts (``wire.LIMITS``), a wall-clock limit per
measurement after which it is abandoned (``max_seconds``), a largest tensor (``max_tensor_bytes``), and
no model that refers to files; measurements run in a child process (``mnas.latency.agent.worker``) so an
abandoned or crashing one never takes the agent with it. Nothing is unpickled. What one connection can
hold is bounded too: a deadline for a request's head (``header_timeout``, token or not) and one for its
body (``body_timeout``), not a timeout per read, which a client sending a byte a second never trips; HTTP
framing it cannot read unambiguously (two Content-Lengths, Transfer-Encoding, a body longer than
declared) is a 400 and the connection closed. The settings (``AgentLimits``) are checked at start.

It is ``http.server`` hardened in place rather than a third-party server: besides the runtime it needs
only the standard library, pydantic (the settings schema) and, for ONNX, the onnx package (the model
checks), so it runs wherever Python and the runtime do (Raspberry Pi, Jetson, Termux): no torch,
no typer. docs/latency.md has the threat model.
"""

from __future__ import annotations

import errno
import hmac
import io
import ipaddress
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from pydantic import ConfigDict, Field

from mnas import MnasError, __version__
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import LocalBackend
from mnas.latency.protocol import check_pin_core
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencySettings
from mnas.schema import Schema, validate
from mnas.latency.agent.wire import DEFAULT_PORT, read_token, settings_from_query, warn_if_weak
from mnas.latency.agent.worker import MeasuringProcess, RuntimeFailed

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "onnxruntime"
DEFAULT_HOST = "127.0.0.1"  # loopback unless the user means to expose it


class AgentLimits(Schema):
    """What the agent accepts and how long it waits, checked when it starts: finite, positive, in range."""

    model_config = ConfigDict(allow_inf_nan=False)

    max_bytes: int = Field(64 * 2**20, ge=1, le=2**32, description="largest model file, bytes")
    max_seconds: float = Field(120.0, gt=0, le=86400, description="per measurement, loading the model included")
    # MnasNet's largest activation at batch 1 and 1024 px is ~100 MiB; a Pi has 1-8 GiB
    max_tensor_bytes: int = Field(256 * 2**20, ge=1, le=2**40, description="largest tensor a model may declare")
    # a head is a few hundred bytes: the deadline runs from when the agent waits for a request (so it also
    # closes idle kept-alive connections) to the head's end, whether or not the token is right
    header_timeout: float = Field(20.0, gt=0, le=3600, description="seconds for a request's head")
    # 64 MiB at 0.5 MiB/s; raise it for big models over a slow link
    body_timeout: float = Field(120.0, gt=0, le=86400, description="seconds for a model upload")


DEFAULT_MAX_BYTES = AgentLimits.default("max_bytes")
DEFAULT_MAX_SECONDS = AgentLimits.default("max_seconds")
DEFAULT_MAX_TENSOR_BYTES = AgentLimits.default("max_tensor_bytes")
DEFAULT_HEADER_TIMEOUT = AgentLimits.default("header_timeout")
DEFAULT_BODY_TIMEOUT = AgentLimits.default("body_timeout")


def agent_limits(**values: Any) -> AgentLimits:
    """The settings checked: one MnasError line naming the first wrong one (``max_seconds`` is
    ``--max-seconds``, and so on; sizes are checked in MB by ``megabytes`` first)."""
    return validate(AgentLimits, values, "agent settings")


def megabytes(value: float, option: str) -> int:
    """``--max-mb``-style options in bytes; a value that is no size is one line naming the option."""
    if not (math.isfinite(value) and value > 0):
        raise MnasError(f"{option} {value}: give a positive number of MB")
    return max(1, int(value * 2**20))


def local_backend(name: str) -> LocalBackend:
    """The runtime the agent serves: an in-process backend that loads model files."""
    be = get_backend(name)
    if not isinstance(be, LocalBackend) or be.model_format is None:
        raise MnasError(f"the agent serves a runtime that loads model files (onnxruntime, openvino or litert), "
                        f"not {name!r}")
    return be


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    # connections the kernel holds until the agent accepts them: a burst of clients (a pool of searches)
    # queues here instead of being dropped or reset (socketserver's default is 5)
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], backend: LocalBackend, token: str,
                 max_bytes: int = DEFAULT_MAX_BYTES, quiet: bool = False, max_seconds: float = DEFAULT_MAX_SECONDS,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        if not token:
            raise MnasError("the agent needs a non-empty token (--token-file)")
        self.limits = agent_limits(max_bytes=max_bytes, max_seconds=max_seconds, max_tensor_bytes=max_tensor_bytes,
                                   header_timeout=header_timeout, body_timeout=body_timeout)
        host, port = address[:2]
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise MnasError(f"port {port}: give a port from 1 to 65535 (0 picks a free one)")
        warn_if_weak(token)
        backend.max_tensor_bytes = self.limits.max_tensor_bytes
        self.backend = backend
        self.token = token.encode()
        self.max_bytes = self.limits.max_bytes
        self.max_seconds = self.limits.max_seconds
        self.quiet = quiet
        self.measurer = MeasuringProcess(backend, self.max_seconds)
        self.measure_lock = threading.Lock()
        self.waiting = 0
        self.served = 0
        self._count_lock = threading.Lock()
        try:
            super().__init__(address, AgentHandler)
        except OSError as e:  # socketserver has closed the socket
            if e.errno == errno.EADDRINUSE:
                raise MnasError(f"port {port} on {host} is already in use: give another with --port, or stop "
                                "the process listening there") from None
            raise MnasError(f"cannot listen on {host} port {port}: {e.strerror or e}; check --host and "
                            "--port") from None
        if not is_loopback(self.server_address[0]):
            log.warning("the agent listens on %s over plain HTTP: the token and the models travel in clear to "
                        "anyone on the network. Keep it on 127.0.0.1 and tunnel instead, e.g. from your "
                        "computer: ssh -N -L %d:127.0.0.1:%d user@device", self.server_address[0],
                        self.server_address[1], self.server_address[1])

    def server_close(self) -> None:
        super().server_close()
        self.measurer.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "mnas": __version__, "backend": self.backend.name,
                "model_format": self.backend.model_format, "runtime_version": self.backend.runtime_version(),
                "device": fingerprint(), "max_bytes": self.max_bytes, "max_seconds": self.max_seconds,
                "max_tensor_bytes": self.backend.max_tensor_bytes, "header_timeout": self.limits.header_timeout,
                "body_timeout": self.limits.body_timeout, "queue": self.waiting,
                "busy": self.measure_lock.locked(), "served": self.served}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets or vanishes is one log line, not a traceback; anything else is a bug."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("connection from %s ended: %s", client_address[0], error)
        else:
            super().handle_error(request, client_address)

    def check_request(self, settings: LatencySettings) -> None:
        """What only this device can judge: the core to pin to and the thread count."""
        check_pin_core(settings.pin_core)
        cores = os.cpu_count() or 1
        if settings.threads > cores:
            raise MnasError(f"threads {settings.threads}: this device has {cores} core(s)")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


class RequestStream(io.RawIOBase):
    """A connection's incoming bytes, read against a deadline for a whole request head or body: each read
    waits only for what is left of it. ``probing`` makes one read that never waits (more bytes already
    sent?)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = math.inf
        self.received = 0  # bytes of the current request
        self.timed_out = False
        self.probing = False

    def readable(self) -> bool:
        return True

    def start(self, seconds: float, new_request: bool = False) -> None:
        self.deadline = time.monotonic() + seconds
        if new_request:
            self.received = 0

    def readinto(self, buf: Any) -> int | None:
        if self.probing:
            self.sock.setblocking(False)
            try:
                return self.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise TimeoutError("the request was not received in time")
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buf)
        except TimeoutError:
            self.timed_out = True
            raise
        self.received += n
        return n


TIMED_OUT = json.dumps({"error": "request not received in time"}).encode()


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    body_length: int | None = None

    def setup(self) -> None:
        super().setup()
        self.stream = RequestStream(self.connection)
        self.rfile = io.BufferedReader(self.stream)

    def handle_one_request(self) -> None:
        self.stream.start(self.server.limits.header_timeout, new_request=True)
        super().handle_one_request()  # a read past the deadline ends it with TimeoutError, caught there
        if self.stream.timed_out:
            self.close_connection = True
            if self.stream.received:  # a partial request gets a reason; an idle connection just the close
                self._write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(TIMED_OUT), TIMED_OUT))

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = self._framing_problem()
        if problem:
            self._error(400, problem, close=True)
            return False
        return True

    def _framing_problem(self) -> str | None:
        """Why the body's extent is ambiguous (a way to smuggle a request or hang the agent), if it is."""
        self.body_length = None
        if "Transfer-Encoding" in self.headers:
            return "Transfer-Encoding is not supported: send the body with a Content-Length"
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            return f"{len(lengths)} Content-Length headers: send exactly one"
        if lengths:
            value = lengths[0].strip(" \t")
            if not (value.isascii() and value.isdigit()):
                return f"Content-Length {value[:40]!r} is not a number of bytes"
            self.body_length = int(value) if len(value) <= 18 else 10**18
        if self.command == "GET" and self.body_length:
            return "GET takes no body"
        return None

    def _write(self, data: bytes) -> None:
        """Send, with as long to do it as a head has to arrive (an answer is a few kB: it never waits)."""
        self.connection.settimeout(self.server.limits.header_timeout)
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            # ISO time, like mnas's own log lines, so an agent's log lines up with the search's
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            sys.stderr.write(f"{stamp} {self.address_string()} {format % args}\n")

    def _send(self, code: int, body: dict[str, Any], close: bool = False) -> None:
        try:
            data = json.dumps(body, allow_nan=False).encode()
        except ValueError:  # a NaN is not JSON, and a client's parser may refuse it or read garbage
            log.error("an answer held a number that is not finite: %r", body)
            code, data = 500, json.dumps({"error": "the agent's answer held a number that is not finite"}).encode()
        self.connection.settimeout(self.server.limits.header_timeout)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="mnas-agent"')
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, close: bool = False) -> None:
        self._send(code, {"error": message}, close)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.server.token)
        if not ok:
            self._discard_body()
            self._error(401, "missing or wrong bearer token", close=True)
        return ok

    def _discard_body(self) -> None:
        """Read and drop a refused request's body (up to the size limit, by the head's deadline) so the
        client, still sending, gets the answer instead of a broken pipe; anything more is cut off by
        closing."""
        left = self.body_length or 0
        if left > self.server.max_bytes:
            return
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except TimeoutError:
            self.stream.timed_out = False  # the refusal is the answer, not a 408
            self.close_connection = True

    def _more_sent(self) -> bool:
        """Whether the client has sent bytes past the body (without waiting for any)."""
        self.stream.probing = True
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.stream.probing = False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if urlparse(self.path).path != "/health":
            self._error(404, "not found: GET /health, POST /v1/measure")
            return
        self._send(200, self.server.health())

    def do_POST(self) -> None:
        if not self._authorized():
            return
        url = urlparse(self.path)
        if url.path != "/v1/measure":
            self._discard_body()
            self._error(404, "not found: POST /v1/measure", close=True)
            return
        length = self.body_length
        if length is None:
            self._error(411, "Content-Length required (the model file is the body)", close=True)
            return
        if length > self.server.max_bytes:
            # the body is not read: closing is cheaper than swallowing an oversized upload
            self._error(413, f"model file of {length} bytes exceeds the limit of {self.server.max_bytes}",
                        close=True)
            return
        if length <= 0:
            self._error(400, "empty body: send the model file", close=True)
            return
        try:
            settings = settings_from_query(url.query)
            self.server.check_request(settings)
        except MnasError as e:
            self._discard_body()
            self._error(400, str(e), close=True)
            return
        self.stream.start(self.server.limits.body_timeout)  # authenticated: the upload's own deadline
        data = self.rfile.read(length)
        if len(data) != length:
            self._error(400, "truncated upload", close=True)
            return
        if self._more_sent():  # the body does not end where its length says: which bytes are the model?
            self._error(400, f"the body is longer than its Content-Length of {length} bytes", close=True)
            return
        with self.server._count_lock:
            self.server.waiting += 1
        try:
            with self.server.measure_lock:
                with self.server._count_lock:
                    self.server.waiting -= 1
                result = self.server.measurer.measure(data, settings)
                self.server.served += 1
        except RuntimeFailed as e:  # the model's fault as far as anyone can tell: 4xx, the agent is fine
            log.info("runtime failed: %s", e)
            self._error(422, str(e))
            return
        except MnasError as e:
            self._error(400, str(e))
            return
        self._send(200, result)


def make_server(backend: str | LocalBackend, token: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                max_bytes: int = DEFAULT_MAX_BYTES, quiet: bool = False, max_seconds: float = DEFAULT_MAX_SECONDS,
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                body_timeout: float = DEFAULT_BODY_TIMEOUT) -> AgentServer:
    """A ready agent (port 0 picks a free port: see ``server.url``); call ``serve_forever()`` to run it.
    The settings are checked (``AgentLimits``) before the backend is loaded or the port bound."""
    agent_limits(max_bytes=max_bytes, max_seconds=max_seconds, max_tensor_bytes=max_tensor_bytes,
                 header_timeout=header_timeout, body_timeout=body_timeout)
    be = local_backend(backend) if isinstance(backend, str) else backend
    return AgentServer((host, port), be, token, max_bytes, quiet, max_seconds, max_tensor_bytes, header_timeout,
                       body_timeout)


def main(argv: list[str] | None = None) -> int:
    """``python -m mnas.latency.agent``: the agent without the CLI's dependencies (no torch, no typer), for
    small devices where only the runtime, numpy and pydantic are installed."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mnas.latency.agent", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=DEFAULT_BACKEND, help="onnxruntime, openvino or litert")
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20, help="largest model file")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="per measurement")
    ap.add_argument("--max-tensor-mb", type=float, default=DEFAULT_MAX_TENSOR_BYTES / 2**20,
                    help="largest tensor a model may declare")
    ap.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT,
                    help="seconds for a request's head to arrive, whole")
    ap.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT,
                    help="seconds for a model upload to arrive, whole")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        server = make_server(args.backend, read_token(args.token_file), args.host, args.port,
                             megabytes(args.max_mb, "--max-mb"), args.quiet, args.max_seconds,
                             megabytes(args.max_tensor_mb, "--max-tensor-mb"), args.header_timeout,
                             args.body_timeout)
    except MnasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = server.health()
    print(f"mnas agent: {info['backend']} {info['runtime_version']} on {info['device']['cpu']} at {server.url}",
          file=sys.stderr)
    serve_until_interrupted(server)
    return 0


def serve_until_interrupted(server) -> None:
    """Serve until Ctrl-C, then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
