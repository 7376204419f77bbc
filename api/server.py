"""Serve the API with uvicorn, in the foreground (``smartcity api``) or in a thread (``up``,
benchmarks, browser tests)."""

from __future__ import annotations

import threading
import time

import uvicorn

from api.app import create_app
from api.config import ApiConfig


class ApiServerError(Exception):
    """The API server did not start (port taken, database unreachable)."""


def _server(config: ApiConfig, host: str, port: int) -> uvicorn.Server:
    settings = uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        log_config=None,  # our own logging (runtime.logs) is already set up
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )
    return uvicorn.Server(settings)


def serve_forever(config: ApiConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn handles them)."""
    server = _server(config, host, port)
    server.run()
    if not server.started:
        raise ApiServerError(f"the API could not start on {host}:{port} (see the log above)")


class BackgroundApiServer:
    """The API in a thread of this process, started and stopped explicitly."""

    def __init__(self, config: ApiConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.host, self.port = host, port
        self._server = _server(config, host, port)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ApiServerError(
                    f"the API did not start on {self.host}:{self.port} within {timeout_s:g} s"
                    " (port taken? database unreachable? see the log)"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
