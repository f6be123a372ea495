"""The ``remote`` backend: export locally, send the model file to device agents, get their timing back.

One agent or a pool: each request goes to the agent with the fewest requests in flight from this client
(ties round-robin); an agent that fails or times out is skipped for ``cooldown_s`` and the request is
retried on another one. ``measure_many`` spreads a list of architectures over the pool in parallel.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlencode

from mnas import MnasError
from mnas.latency.agent import QUERY_SETTINGS
from mnas.latency.base import LatencyResult, LatencySettings
from mnas.latency.protocol import calibrate_bn, torch_threads

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.arch import Architecture

TOKEN_ENV = "MNAS_DEVICE_TOKEN"
TOKEN_FILE_ENV = "MNAS_DEVICE_TOKEN_FILE"


class AgentError(Exception):
    """An agent failed in a way another agent might not (down, timed out, 5xx)."""


def resolve_token(token: str | None = None, token_file: str | None = None) -> str:
    if token:
        return token
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        from mnas.latency.agent import read_token
        return read_token(path)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    raise MnasError(f"the remote backend needs the agents' token: --token-file F, ${TOKEN_FILE_ENV} or ${TOKEN_ENV}")


class RemoteBackend:
    name = "remote"

    def __init__(self, urls: Sequence[str], token: str | None = None, token_file: str | None = None,
                 timeout_s: float = 300.0, health_timeout_s: float = 5.0, cooldown_s: float = 30.0) -> None:
        if not urls:
            raise MnasError("the remote backend needs at least one agent URL")
        self.urls = [u.rstrip("/") if "://" in u else f"http://{u.rstrip('/')}" for u in urls]
        self.token = resolve_token(token, token_file)
        self.timeout_s = timeout_s
        self.health_timeout_s = health_timeout_s
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._in_flight = {u: 0 for u in self.urls}
        self._down_until = {u: 0.0 for u in self.urls}
        self._rr = itertools.count()
        self._health: dict[str, dict[str, Any]] = {}

    # --- HTTP -------------------------------------------------------------------------------------------
    def _request(self, url: str, method: str = "GET", body: bytes | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", "")
            except Exception:
                message = e.reason
            if e.code >= 500:
                raise AgentError(f"{url}: HTTP {e.code} {message}") from None
            raise MnasError(f"agent {url} refused the request: HTTP {e.code} {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:  # refused, reset, timeout, bad JSON
            raise AgentError(f"{url}: {getattr(e, 'reason', e)}") from None

    def health(self, url: str) -> dict[str, Any]:
        info = self._request(f"{url}/health", timeout=self.health_timeout_s)
        self._health[url] = info
        return info

    def _agent_info(self) -> dict[str, Any]:
        """Health of the first agent that answers (the pool is assumed to be one kind of device)."""
        for url in self._order():
            if url in self._health:
                return self._health[url]
            try:
                return self.health(url)
            except AgentError:
                self._mark_down(url)
        raise MnasError(f"no device agent answers: {', '.join(self.urls)}")

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        info = self._agent_info()
        return {"backend": f"remote/{info['backend']}", "runtime_version": info["runtime_version"],
                "device": info["device"]["id"]}

    # --- pool -------------------------------------------------------------------------------------------
    def _order(self) -> list[str]:
        """Agents to try, best first: up ones by fewest in flight (round-robin on ties), then down ones."""
        now = time.monotonic()
        start = next(self._rr)
        n = len(self.urls)
        with self._lock:
            ranked = sorted(range(n), key=lambda i: (self._down_until[self.urls[i]] > now,
                                                     self._in_flight[self.urls[i]], (i - start) % n))
        return [self.urls[i] for i in ranked]

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self.cooldown_s

    def post_model(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        """Send a model file to the pool; retry on another agent when one fails."""
        query = urlencode({k: getattr(settings, k) for k in QUERY_SETTINGS if getattr(settings, k) is not None})
        limit = self._agent_info().get("max_bytes")
        if limit and len(data) > limit:
            raise MnasError(f"the model file has {len(data)} bytes, over the agents' limit of {limit} "
                            "(start them with a larger --max-mb)")
        errors = []
        for url in self._order():
            with self._lock:
                self._in_flight[url] += 1
            try:
                out = self._request(f"{url}/v1/measure?{query}", "POST", data)
            except AgentError as e:
                errors.append(str(e))
                self._mark_down(url)
                continue
            finally:
                with self._lock:
                    self._in_flight[url] -= 1
            result = LatencyResult.from_dict(out)
            result.extra = {**result.extra, "agent": url, "via": "remote"}
            return result
        raise MnasError(f"every device agent failed: {'; '.join(errors)}")

    # --- LatencyBackend ---------------------------------------------------------------------------------
    def export(self, model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        fmt = self._agent_info().get("model_format")
        if fmt == "onnx":
            from mnas.latency.local import onnx_bytes
            return onnx_bytes(model, input_shape)
        if fmt == "tflite":
            from mnas.latency.litert_backend import LiteRtBackend
            return LiteRtBackend().export(model, input_shape)
        raise MnasError(f"the agents want model format {fmt!r}, which this client cannot export")

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        import copy
        settings = settings or LatencySettings()
        with torch_threads(settings.threads):
            if settings.calibrate_bn:
                model = copy.deepcopy(model)
                calibrate_bn(model, tuple(input_shape))
            data = self.export(model.eval(), tuple(input_shape))
        return self.post_model(data, settings)

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        from mnas.model import build

        settings = settings or LatencySettings()
        model = build(arch, num_classes=settings.num_classes, in_chans=settings.in_chans)
        with torch_threads(settings.threads):
            if settings.calibrate_bn:
                calibrate_bn(model, settings.input_shape())
            data = self.export(model.eval(), settings.input_shape())
        result = self.post_model(data, settings)
        result.arch = arch.canonical
        return result

    def measure_many(self, archs: Sequence[Architecture],
                     settings: LatencySettings | None = None) -> list[LatencyResult]:
        """Measure several architectures, one request per agent at a time, results in input order."""
        with ThreadPoolExecutor(max_workers=len(self.urls)) as pool:
            return list(pool.map(lambda a: self.measure(a, settings), archs))
