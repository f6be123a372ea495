"""The ``remote`` backend: export locally, send the model file to device agents, get their timing back.

One agent or a pool: each request goes to the agent with the fewest requests in flight from this client
(ties round-robin); an agent that fails or times out is skipped for ``cooldown_s`` and the request is
retried on another one. ``measure_many`` spreads a list of architectures over the pool in parallel.

The bearer token is a constructor argument (``token=`` or ``token_file=``, which ``get_backend`` passes
on); only when neither is given does it come from $MNAS_DEVICE_TOKEN_FILE or $MNAS_DEVICE_TOKEN, which is
how a config-driven search, naming just ``remote:URL``, reaches its agents. It is sent to the agents'
own origins only: a redirect elsewhere is refused, not followed. An agent's answer is checked like any
input: a malformed one is a MnasError (the trial fails with the reason), never a result.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

from mnas import MnasError
from mnas.latency.base import LatencyResult
from mnas.latency.protocol import model_file
from mnas.latency.settings import LatencySettings
from mnas.latency.agent.wire import resolve_token, settings_to_query

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.arch import Architecture

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1 << 20  # a result is a few kB; an agent that sends more is not an mnas agent


class AgentError(Exception):
    """An agent failed in a way another agent might not (down, timed out, 5xx)."""


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(
        parts.scheme.lower())


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would repeat the Authorization header to wherever a redirect points: refuse other origins."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if origin(newurl) != origin(req.full_url):
            raise MnasError(f"agent {req.full_url} redirects to another origin ({newurl}); the token is not sent "
                            "there: give the agent's own URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(SameOriginRedirects)


def check_health(info: Any, url: str) -> dict[str, Any]:
    """What the client relies on in ``GET /health``, checked."""
    ok = (isinstance(info, dict) and all(isinstance(info.get(k), str) for k in ("backend", "runtime_version"))
          and isinstance(info.get("device"), dict) and isinstance(info["device"].get("id"), str)
          and isinstance(info.get("model_format"), (str, type(None)))
          and isinstance(info.get("max_bytes"), (int, type(None))))
    if not ok:
        raise MnasError(f"agent {url} answered a malformed /health (is it an mnas agent of this version?)")
    return info


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

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> RemoteBackend:
        """``remote:URL[,URL...]``; ``options`` as for the constructor (``token_file=`` for one)."""
        urls = [u.strip() for u in arg.split(",") if u.strip()]
        if not urls:
            raise MnasError("remote backend needs agent URLs: remote:http://HOST:PORT[,http://HOST2:PORT]")
        return cls(urls, **options)

    # --- HTTP -------------------------------------------------------------------------------------------
    def _request(self, url: str, method: str = "GET", body: bytes | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/octet-stream"})
        try:
            with _OPENER.open(req, timeout=timeout or self.timeout_s) as resp:
                body = resp.read(MAX_ANSWER_BYTES + 1)
            if len(body) > MAX_ANSWER_BYTES:
                raise MnasError(f"agent {url} answered more than {MAX_ANSWER_BYTES} bytes: not an mnas agent")
            return json.loads(body)
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", "")
            except Exception:
                message = e.reason
            if e.code >= 500:
                raise AgentError(f"{url}: HTTP {e.code} {message}") from None
            raise MnasError(f"agent {url} refused the request: HTTP {e.code} {message}") from None
        except MnasError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:  # refused, reset, timeout, bad JSON
            raise AgentError(f"{url}: {getattr(e, 'reason', e)}") from None

    def health(self, url: str) -> dict[str, Any]:
        info = check_health(self._request(f"{url}/health", timeout=self.health_timeout_s), url)
        self._health[url] = info
        return info

    def info(self) -> dict[str, Any]:
        """What the agents say about themselves (``GET /health`` of the first that answers; the pool is assumed
        to be one kind of device): backend, model_format, runtime_version, device, max_bytes, queue."""
        for url in self._order():
            if url in self._health:
                return self._health[url]
            try:
                return self.health(url)
            except AgentError:
                self._mark_down(url)
        raise MnasError(f"no device agent answers: {', '.join(self.urls)}")

    @property
    def model_format(self) -> str | None:
        """The file format the agents load ("onnx" or "tflite"); asks them once."""
        return self.info().get("model_format")

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        info = self.info()
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

    def measure_file(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        """Send a model file to the pool; retry on another agent when one fails."""
        query = settings_to_query(settings)
        limit = self.info().get("max_bytes")
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
                log.info("agent failed, trying another: %s", e)
                errors.append(str(e))
                self._mark_down(url)
                continue
            finally:
                with self._lock:
                    self._in_flight[url] -= 1
            return agent_result(out, url)
        raise MnasError(f"every device agent failed: {'; '.join(errors)}")

    # --- LatencyBackend ---------------------------------------------------------------------------------
    def _file(self, model: nn.Module | Architecture, input_shape: tuple[int, ...],
              settings: LatencySettings) -> bytes:
        fmt = self.model_format
        if fmt is None:
            raise MnasError("the agents take no model files; serve onnxruntime, openvino or litert")
        return model_file(model, fmt, input_shape, settings)

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        settings = settings or LatencySettings()
        return self.measure_file(self._file(model, tuple(input_shape), settings), settings)

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        settings = settings or LatencySettings()
        result = self.measure_file(self._file(arch, settings.input_shape(), settings), settings)
        result.arch = arch.canonical
        return result

    def measure_many(self, archs: Sequence[Architecture],
                     settings: LatencySettings | None = None) -> list[LatencyResult]:
        """Measure several architectures, one request per agent at a time, results in input order."""
        with ThreadPoolExecutor(max_workers=len(self.urls)) as pool:
            return list(pool.map(lambda a: self.measure(a, settings), archs))


def agent_result(answer: Any, url: str) -> LatencyResult:
    """An agent's answer as a result, or a MnasError saying what is wrong with it."""
    try:
        result = LatencyResult.from_dict(answer)
    except MnasError as e:
        raise MnasError(f"agent {url} answered a malformed result: {e}") from None
    if result.median_ms <= 0:
        raise MnasError(f"agent {url} answered a median of {result.median_ms} ms: not a positive time")
    result.extra = {**result.extra, "agent": url, "via": "remote"}
    return result
