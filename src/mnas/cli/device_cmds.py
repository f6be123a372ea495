"""``mnas device serve``: the latency agent for the device you deploy to (docs/latency.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from mnas.latency.agent.server import (DEFAULT_BACKEND, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_HOST,
                                       DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, DEFAULT_MAX_TENSOR_BYTES, DEFAULT_PORT,
                                       make_server, megabytes, serve_until_interrupted)
from mnas.latency.agent.wire import read_token

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

device_app = typer.Typer(no_args_is_help=True, help="Device agents: measure latency on the target device.")
app.add_typer(device_app, name="device")


@device_app.command("serve")
def device_serve(backend: str = typer.Option(DEFAULT_BACKEND, "--backend", "-b",
                                             help="onnxruntime, openvino or litert"),
                 host: str = typer.Option(DEFAULT_HOST, "--host",
                                          help="address to bind (loopback unless you mean to expose it)"),
                 port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535),
                 token_file: Path = typer.Option(..., "--token-file", help="file holding the bearer token"),
                 max_mb: float = typer.Option(DEFAULT_MAX_BYTES / 2**20, "--max-mb", min=0.001,
                                              help="largest model file accepted, MB"),
                 max_seconds: float = typer.Option(DEFAULT_MAX_SECONDS, "--max-seconds", min=0.001,
                                                   help="wall-clock limit per measurement (loading included), "
                                                        "after which it is abandoned"),
                 max_tensor_mb: float = typer.Option(DEFAULT_MAX_TENSOR_BYTES / 2**20, "--max-tensor-mb",
                                                     min=0.001, help="largest tensor a model may declare, MB"),
                 header_timeout: float = typer.Option(DEFAULT_HEADER_TIMEOUT, "--header-timeout",
                                                      help="seconds for a request's head to arrive, whole (a "
                                                           "client sending a byte at a time is cut off)"),
                 body_timeout: float = typer.Option(DEFAULT_BODY_TIMEOUT, "--body-timeout",
                                                    help="seconds for a model upload to arrive, whole (raise it "
                                                         "for big models over a slow link)"),
                 quiet: bool = typer.Option(False, "--quiet", help="no request log")) -> None:
    """Serve POST /v1/measure and GET /health until interrupted."""
    server = make_server(backend, read_token(str(token_file)), host, port, megabytes(max_mb, "--max-mb"), quiet,
                         max_seconds, megabytes(max_tensor_mb, "--max-tensor-mb"), header_timeout, body_timeout)
    info = server.health()
    typer.echo(f"mnas agent: {info['backend']} {info['runtime_version']} on {info['device']['cpu']} "
               f"({info['device']['cores']} cores) at {server.url}", err=True)
    serve_until_interrupted(server)
