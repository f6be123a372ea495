"""The device agent's measuring process. Runtimes are C++ code fed files from the network; in a child process
a measurement that runs past its wall-clock limit can be killed (a thread stuck inside a runtime cannot be
stopped, and would keep the CPU busy under the next measurement), and a runtime that crashes or is killed
for memory costs one measurement, not the agent. The child gets its backend when it starts (``spawn``
pickles it, agent to child); after that messages go both ways as JSON and raw bytes, so the agent
unpickles nothing the child sends."""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
from typing import Any

from mnas import MnasError
from mnas.latency.local import LocalBackend
from mnas.latency.settings import LatencySettings

log = logging.getLogger(__name__)

# importing a runtime takes seconds on a small board; a (re)start is not counted against the limit
START_TIMEOUT_S = 120.0


class Overrun(MnasError):
    """The measurement ran past the wall-clock limit; its process was killed."""


class RuntimeFailed(MnasError):
    """The runtime raised or crashed on the model (not a refusal of the request)."""


class MeasuringProcess:
    """One child process that loads and times model files on ``backend``, started on first use and replaced
    after a crash or an overrun."""

    def __init__(self, backend: LocalBackend, max_seconds: float) -> None:
        self.backend = backend
        self.max_seconds = max_seconds
        self._process: Any = None
        self._conn: Any = None

    def measure(self, data: bytes, settings: LatencySettings) -> dict[str, Any]:
        """The result as a dict. MnasError for a refused file, ``RuntimeFailed`` for a runtime failure,
        ``Overrun`` for a measurement abandoned at the limit (load and timing together)."""
        conn = self._ready()
        try:
            conn.send_bytes(json.dumps(settings.to_dict()).encode())
            conn.send_bytes(data)
            answered = conn.poll(self.max_seconds)
            kind, payload = json.loads(conn.recv_bytes()) if answered else (None, None)
        except (EOFError, OSError, ValueError, TypeError):  # the child died (or answered nonsense)
            how = self._exit_status()
            self.close()
            raise RuntimeFailed(f"the runtime crashed on this model ({how}); the agent goes on") from None
        if not answered:
            self.close()
            raise Overrun(f"the measurement took longer than the agent's limit of {self.max_seconds:g} s and was "
                          "abandoned: ask for fewer runs, or time a smaller model")
        if kind == "ok" and isinstance(payload, dict):
            return payload
        raise (MnasError if kind == "refused" else RuntimeFailed)(str(payload))

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=30)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _ready(self) -> Any:
        if self._process is not None and self._process.is_alive():
            return self._conn
        self.close()
        ctx = multiprocessing.get_context("spawn")  # a fork of a threaded server could inherit held locks
        conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(target=serve, args=(child_conn, self.backend), name="mnas-measure",
                                    daemon=True)
        self._process.start()
        child_conn.close()
        self._conn = conn
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise EOFError
            conn.recv_bytes()
        except (EOFError, OSError):
            how = self._exit_status()
            self.close()
            raise RuntimeFailed(f"the measuring process did not start ({how})") from None
        log.debug("measuring process %d started", self._process.pid)
        return conn

    def _exit_status(self) -> str:
        self._process.join(timeout=5)
        code = self._process.exitcode
        if code is None:
            return "no answer"
        if code < 0:
            name = signal.Signals(-code).name
            return f"{name}, out of memory?" if name == "SIGKILL" else name
        return f"exit code {code}"


def serve(conn: Any, backend: LocalBackend) -> None:
    """The child's loop: settings (JSON), then the model file; answers ["ok", result], ["refused", line]
    or ["failed", line]. Ends when the agent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the agent, and the agent stops this process
    # import the runtime (and the ONNX checker) before saying "ready": the limit is for measuring
    backend.runtime_version()
    if backend.model_format == "onnx":
        import onnx  # noqa: F401
    conn.send_bytes(b'["ready", null]')
    while True:
        try:
            settings = LatencySettings.from_dict(json.loads(conn.recv_bytes()))
            data = conn.recv_bytes()
        except EOFError:
            return
        try:
            answer = ["ok", backend.measure_file(data, settings).to_dict()]
        except MnasError as e:
            answer = ["refused", str(e)]
        except Exception as e:  # the runtime's own exception types
            answer = ["failed", f"measurement failed: {type(e).__name__}: {str(e)[:300]}"]
        conn.send_bytes(json.dumps(answer).encode())
