"""The device agent: a small HTTP server on the device you deploy to that times model files.

    POST /v1/measure?runs=30&warmup=5&threads=1   body: the model file (ONNX, or .tflite for litert)
    GET  /health                                  fingerprint, backend, runtime version, queue length

Every request needs ``Authorization: Bearer <token>`` (compared in constant time). One model is measured
at a time: concurrent requests wait their turn, because two models timed together slow each other down.
The work one request can ask for is bounded: capped run counts (``wire.LIMITS``), a wall-clock limit per
measurement after which it is abandoned (``max_seconds``), a largest tensor (``max_tensor_bytes``), and
no model that refers to files; measurements run in a child process (``mnas.latency.agent.worker``) so an
abandoned or crashing one never takes the agent with it. Nothing is unpickled. Besides the runtime it
needs only the standard library, pydantic (the settings schema) and, for ONNX, the onnx package (the
model checks), so it runs wherever Python and the runtime do (Raspberry Pi, Jetson, Termux): no torch,
no typer. docs/latency.md has the threat model.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from mnas import MnasError, __version__
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import LocalBackend
from mnas.latency.protocol import check_pin_core
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencySettings
from mnas.latency.agent.wire import DEFAULT_PORT, read_token, settings_from_query, warn_if_weak
from mnas.latency.agent.worker import MeasuringProcess, RuntimeFailed

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "onnxruntime"
DEFAULT_HOST = "127.0.0.1"  # loopback unless the user means to expose it
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 120.0  # per measurement, loading the model included
# MnasNet's largest activation at batch 1 and 1024 px is ~100 MiB; a Pi has 1-8 GiB
DEFAULT_MAX_TENSOR_BYTES = 256 * 1024 * 1024


def local_backend(name: str) -> LocalBackend:
    """The runtime the agent serves: an in-process backend that loads model files."""
    be = get_backend(name)
    if not isinstance(be, LocalBackend) or be.model_format is None:
        raise MnasError(f"the agent serves a runtime that loads model files (onnxruntime, openvino or litert), "
                        f"not {name!r}")
    return be


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    # a dead client must not hold the (single) measuring slot forever: reads time out
    request_timeout = 60.0

    def __init__(self, address: tuple[str, int], backend: LocalBackend, token: str,
                 max_bytes: int = DEFAULT_MAX_BYTES, quiet: bool = False, max_seconds: float = DEFAULT_MAX_SECONDS,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        if not token:
            raise MnasError("the agent needs a non-empty token (--token-file)")
        if max_seconds <= 0 or max_tensor_bytes <= 0:
            raise MnasError("the agent's time and tensor limits must be positive")
        warn_if_weak(token)
        backend.max_tensor_bytes = max_tensor_bytes
        self.backend = backend
        self.token = token.encode()
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.quiet = quiet
        self.measurer = MeasuringProcess(backend, max_seconds)
        self.measure_lock = threading.Lock()
        self.waiting = 0
        self.served = 0
        self._count_lock = threading.Lock()
        super().__init__(address, AgentHandler)
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
                "max_tensor_bytes": self.backend.max_tensor_bytes, "queue": self.waiting,
                "busy": self.measure_lock.locked(), "served": self.served}

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


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            # ISO time, like mnas's own log lines, so an agent's log lines up with the search's
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            sys.stderr.write(f"{stamp} {self.address_string()} {format % args}\n")

    def _send(self, code: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
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
        """Read and drop a refused request's body (up to the size limit) so the client, still sending,
        gets the answer instead of a broken pipe; anything bigger is cut off by closing."""
        try:
            left = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if left > self.server.max_bytes:
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

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
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
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
        data = self.rfile.read(length)
        if len(data) != length:
            self._error(400, "truncated upload", close=True)
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
                max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> AgentServer:
    """A ready agent (port 0 picks a free port: see ``server.url``); call ``serve_forever()`` to run it."""
    be = local_backend(backend) if isinstance(backend, str) else backend
    return AgentServer((host, port), be, token, max_bytes, quiet, max_seconds, max_tensor_bytes)


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
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        server = make_server(args.backend, read_token(args.token_file), args.host, args.port,
                             int(args.max_mb * 2**20), args.quiet, args.max_seconds,
                             int(args.max_tensor_mb * 2**20))
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
