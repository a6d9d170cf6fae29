"""Run the app under uvicorn: one process in the foreground, or ``workers`` processes each with its own model."""

from __future__ import annotations

import ipaddress
import logging
import os

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
    import uvicorn

    from krqa.serving.app import create_app

    serve = cfg.serve
    if not _is_loopback(serve.host) and not os.environ.get(serve.api_key_env):
        log.warning("listening on %s without auth: set %s to require a bearer token", serve.host, serve.api_key_env)
    common = dict(host=serve.host, port=serve.port, log_config=None, server_header=False,
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
    from krqa.serving.app import create_app

    setup_logging()
    logging.getLogger().setLevel(int(os.environ.get(_LEVEL_ENV, logging.INFO)))
    return create_app(KrqaConfig.model_validate_json(os.environ[_CONFIG_ENV]))
