"""Issue 30, failure 7: the device agent under load and under hostile clients. A real agent on a loopback
port, spoken to over raw sockets where the point is what a well-behaved client would never send: bursts of
connections, requests sent a byte at a time, broken HTTP framing, bad settings and a busy port."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from agent_helpers import QUERY, TOKEN, big_input_model, call, running_agent

from mnas import MnasError
from mnas.latency.agent import server as agent_module
from mnas.latency.agent.server import make_server
from mnas.testing import run_cli

QUICK = {"header_timeout": 0.5, "body_timeout": 0.5}  # deadlines small enough for a test to outwait
WITHIN = 4.0  # a connection the agent means to close is closed well before this


@pytest.fixture(scope="module")
def agent():
    with running_agent(**QUICK) as server:
        yield server


@pytest.fixture()
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0o600)
    return path


def connect(server, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=timeout)


def until_closed(sock: socket.socket, within: float = WITHIN) -> bytes:
    """All the agent sends before it closes the connection; fails if it is still open after ``within`` s."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the agent kept the connection open for {within} s, after sending {data!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def head(request_line: str, *headers: str, token: str | None = TOKEN) -> bytes:
    lines = [request_line, "Host: 127.0.0.1", *headers]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(data: bytes) -> tuple[int, dict]:
    """The one response in ``data``: its status and JSON body (NaN or Infinity in it fail the parse)."""
    assert data.count(b"HTTP/1.1 ") == 1, data
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in {body!r}"))


# --- 7a: a burst of clients --------------------------------------------------------------------------------

def test_fifty_clients_at_once_all_get_answers():
    """The kernel holds connections in the listen queue until the agent accepts them; while it is busy
    (here: before it starts accepting) a burst of 50 must queue, not be dropped or reset."""
    server = make_server("onnxruntime", TOKEN, "127.0.0.1", 0, quiet=True)
    try:
        with ThreadPoolExecutor(50) as pool:
            def connected(_):
                try:
                    return connect(server, timeout=1.0)
                except OSError as e:
                    return e

            socks = list(pool.map(connected, range(50)))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            refused = [s for s in socks if isinstance(s, OSError)]
            assert not refused, f"{len(refused)} of 50 connections failed: {refused[0]!r}"

            def health(sock):
                with sock:
                    sock.sendall(head("GET /health HTTP/1.1", "Connection: close"))
                    return answer(until_closed(sock))[0]

            assert list(pool.map(health, socks)) == [200] * 50
            # and 50 clients each making their own connection while it serves
            codes = [code for code, _ in pool.map(lambda _: call(server, "GET", "/health"), range(50))]
            assert codes == [200] * 50
    finally:
        server.shutdown()
        server.server_close()


# --- 7b: slow and partial requests -------------------------------------------------------------------------

def trickle(sock: socket.socket, within: float = WITHIN) -> bytes:
    """Send a byte every 0.1 s until the agent closes the connection; what it sent before, or fail."""
    deadline = time.monotonic() + within
    data = b""
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return data
        sock.settimeout(0.1)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the agent still read a byte every 0.1 s after {within} s, having sent {data!r}")


@pytest.mark.parametrize("start, reason", [
    (b"GET /health HTTP/1.1\r\nX-Slow: ", 408),  # an unfinished head, before any token
    (b"GET /heal", 408),  # an unfinished request line
    (head(f"POST /v1/measure?{QUERY} HTTP/1.1", "Content-Length: 100000", token=None), 401),  # body before auth
    (head(f"POST /v1/measure?{QUERY} HTTP/1.1", "Content-Length: 100000"), 408),  # an authenticated body
], ids=["head", "request-line", "body-before-auth", "body"])
def test_a_request_sent_a_byte_at_a_time_is_cut_off_at_its_deadline(agent, start, reason):
    with connect(agent) as sock:
        sock.sendall(start)
        started = time.monotonic()
        sent = trickle(sock)
        assert time.monotonic() - started < WITHIN
    if sent:  # the answer, unless the close overtook it
        assert answer(sent)[0] == reason
    assert call(agent, "GET", "/health")[0] == 200


def test_a_connection_that_sends_nothing_is_closed(agent):
    with connect(agent) as sock:
        assert until_closed(sock) == b""  # nothing was asked: no answer, just the close


def test_a_kept_alive_connection_serves_several_requests(agent):
    with connect(agent) as sock:
        for _ in range(3):
            sock.sendall(head("GET /health HTTP/1.1"))
            assert answer(read_one(sock))[0] == 200
        assert until_closed(sock) == b""  # then idle: closed at the head deadline


def test_the_body_deadline_is_not_the_head_deadline():
    """A model upload may take longer than a head: the body gets its own deadline."""
    model = big_input_model([1, 8])
    with running_agent(header_timeout=0.3, body_timeout=30) as server, connect(server) as sock:
        sock.sendall(head(f"POST /v1/measure?{QUERY} HTTP/1.1", f"Content-Length: {len(model)}"))
        for i in range(0, len(model), len(model) // 5):  # 0.5 s in all, past the head's deadline
            time.sleep(0.1)
            sock.sendall(model[i:i + len(model) // 5])
        code, out = answer(read_one(sock))
        assert code == 200 and out["median_ms"] > 0


def read_one(sock: socket.socket) -> bytes:
    """One response, on a connection that stays open."""
    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_part = data.partition(b"\r\n\r\n")[0].decode().lower()
    length = int(head_part.split("content-length:")[1].split()[0])
    while len(data.partition(b"\r\n\r\n")[2]) < length:
        data += sock.recv(65536)
    return data


# --- 7c: HTTP framing errors -------------------------------------------------------------------------------

FRAMING = {
    "duplicate-length": (["Content-Length: 8", "Content-Length: 8"], "Content-Length"),
    "conflicting-length": (["Content-Length: 100000", "Content-Length: 8"], "Content-Length"),
    "negative-length": (["Content-Length: -8"], "Content-Length"),
    "non-numeric-length": (["Content-Length: eight"], "Content-Length"),
    "signed-length": (["Content-Length: +8"], "Content-Length"),
    "underscored-length": (["Content-Length: 0_8"], "Content-Length"),  # int() reads it as 8
    "chunked": (["Transfer-Encoding: chunked"], "Transfer-Encoding"),
    "chunked-and-length": (["Transfer-Encoding: chunked", "Content-Length: 8"], "Transfer-Encoding"),
}


@pytest.mark.parametrize("token", [TOKEN, None], ids=["authenticated", "unauthenticated"])
@pytest.mark.parametrize("case", FRAMING)
def test_framing_errors_get_400_and_the_connection_closed(agent, case, token):
    headers, named = FRAMING[case]
    with connect(agent) as sock:
        sock.sendall(head(f"POST /v1/measure?{QUERY} HTTP/1.1", *headers, token=token) + b"8 bytes!")
        code, out = answer(until_closed(sock))
    assert code == 400 and named in out["error"], out
    assert call(agent, "GET", "/health")[0] == 200


def test_a_body_longer_than_its_length_is_refused_not_measured(agent):
    model = big_input_model([1, 8])
    with connect(agent) as sock:
        sock.sendall(head(f"POST /v1/measure?{QUERY} HTTP/1.1", f"Content-Length: {len(model)}")
                     + model + b"\x00" * 16)
        code, out = answer(until_closed(sock))
    assert code == 400 and "longer than its Content-Length" in out["error"]


def test_a_get_with_a_body_is_refused(agent):
    with connect(agent) as sock:
        sock.sendall(head("GET /health HTTP/1.1", "Content-Length: 5") + b"hello")
        code, out = answer(until_closed(sock))
    assert code == 400 and "no body" in out["error"]


# --- 7d: settings checked at start ------------------------------------------------------------------------

BAD_SETTINGS = [("max_seconds", math.nan), ("max_seconds", math.inf), ("max_seconds", 0), ("max_seconds", -1),
                ("max_seconds", 1e12), ("max_bytes", 0), ("max_tensor_bytes", -1), ("header_timeout", math.nan),
                ("header_timeout", 0), ("body_timeout", math.inf), ("body_timeout", -0.5)]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_bad_settings_are_refused_before_the_agent_listens(name, value):
    with pytest.raises(MnasError, match=name):
        make_server("onnxruntime", TOKEN, "127.0.0.1", 0, quiet=True, **{name: value})


@pytest.mark.parametrize("option, value", [("--max-seconds", "nan"), ("--max-seconds", "inf"),
                                           ("--max-mb", "nan"), ("--max-tensor-mb", "inf"),
                                           ("--header-timeout", "nan"), ("--body-timeout", "0")])
def test_bad_settings_on_the_command_line_are_one_line(token_file, capsys, monkeypatch, option, value):
    monkeypatch.setattr(agent_module, "serve_until_interrupted", lambda server: pytest.fail("it started serving"))
    field = option[2:].replace("-", "_")
    for run in (lambda: run_cli("device", "serve", "--token-file", token_file, "--port", "0", option, value),
                # the agent without the CLI's dependencies
                lambda: agent_module.main(["--token-file", str(token_file), "--port", "0", option, value])):
        result = run()
        code, err = (result.code, result.stderr) if hasattr(result, "code") else (result, capsys.readouterr().err)
        err = err.strip()
        assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert option in err or field in err, err


def test_health_is_strict_json(agent, monkeypatch):
    code, info = answer(http_get(agent, "/health"))
    assert code == 200 and info["max_seconds"] == 120 and info["header_timeout"] == 0.5
    # were a number ever not finite, the answer is an error, never a NaN a JSON parser may refuse
    monkeypatch.setattr(type(agent), "health", lambda self: {"status": "ok", "max_seconds": math.nan})
    code, info = answer(http_get(agent, "/health"))
    assert code == 500 and "not finite" in info["error"]


def http_get(server, path: str) -> bytes:
    with connect(server) as sock:
        sock.sendall(head(f"GET {path} HTTP/1.1", "Connection: close"))
        return until_closed(sock)


# --- 7e: a port already in use -----------------------------------------------------------------------------

def test_a_busy_port_is_one_line_naming_it_and_the_fix(token_file, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("device", "serve", "--token-file", token_file, "--port", port)
        assert result.code == 2, result.stderr
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and f"port {port}" in err and "--port" in err, err
        assert agent_module.main(["--token-file", str(token_file), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"port {port}" in err and "--port" in err, err
