"""Run the app under uvicorn: one process in the foreground, or ``workers`` processes each with its own model."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from fastapi import FastAPI

from krqa.config import KrqaConfig
from krqa.errors import KrqaError
from krqa.log import setup_logging

log = logging.getLogger(__name__)

_CONFIG_ENV = "KRQA_SERVE_CONFIG_JSON"
_LEVEL_ENV = "KRQA_SERVE_LOG_LEVEL"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(cfg: KrqaConfig) -> None:
    """Serve until interrupted; a model or index that fails to load stops the server with that error."""
    import uvicorn  # start-up time: uvicorn loads only in the process that serves

    from krqa.serving.app import create_app  # start-up time: the app, its routes and the engine load only when a server starts
    from krqa.serving.protocol import configure  # start-up time: the app, its routes and the engine load only when a server starts

    serve = cfg.serve
    if not _is_loopback(serve.host) and not os.environ.get(serve.api_key_env):
        log.warning("listening on %s without auth: set %s to require a bearer token", serve.host, serve.api_key_env)
    if not _is_loopback(serve.host) and not serve.allowed_hosts:
        log.warning("listening on %s: requests are answered only for the Host names localhost, 127.0.0.1, ::1 and %s; "
                    "set serve.allowed_hosts to the names clients use (or ['*'])", serve.host, serve.host)
    common = dict(host=serve.host, port=serve.port, log_config=None, server_header=False, http=configure(serve),
                  timeout_graceful_shutdown=max(1, int(serve.request_timeout_s)))
    if serve.workers > 1:
        # Worker processes rebuild the app from the validated config passed through the environment.
        os.environ[_CONFIG_ENV] = cfg.model_dump_json()
        os.environ[_LEVEL_ENV] = str(logging.getLogger().level)
        uvicorn.run("krqa.serving.server:app_from_env", factory=True, workers=serve.workers, **common)
        return
    failures: list[BaseException] = []
    server: uvicorn.Server

    def stop_on_load_error(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(cfg, on_load_error=stop_on_load_error)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    server.run()
    if failures:
        exc = failures[0]
        if isinstance(exc, KrqaError):
            raise exc
        raise KrqaError(f"serve: loading failed: {type(exc).__name__}: {exc}") from exc


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker mode (each worker process calls it once)."""
    from krqa.serving.app import create_app  # start-up time: the app, its routes and the engine load only when a server starts
    from krqa.serving.protocol import configure  # start-up time: the app, its routes and the engine load only when a server starts

    setup_logging()
    logging.getLogger().setLevel(int(os.environ.get(_LEVEL_ENV, logging.INFO)))
    cfg = KrqaConfig.model_validate_json(os.environ[_CONFIG_ENV])
    configure(cfg.serve)
    return create_app(cfg)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawned(args: list[str], host: str, port: int, timeout_s: float = 600.0, quiet: bool = False, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``krqa serve`` as its own uvicorn process (own GIL, as in production), yield its URL once /ready
    answers, and stop it whatever happens; used by the demo and the service benchmark."""
    import httpx  # start-up time: httpx loads only to wait for a spawned server

    cmd = [sys.executable, "-m", "krqa", *(["--quiet"] if quiet else []), "serve", *args, "--host", host, "--port", str(port)]
    log.info("starting the service: %s", " ".join(cmd[2:]))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env if env is not None else dict(os.environ))
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise KrqaError(f"krqa serve exited with code {proc.returncode} before it was ready")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise KrqaError(f"krqa serve was not ready after {timeout_s:.0f} s")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
