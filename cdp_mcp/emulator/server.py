"""Serving the emulator: in the foreground (`cdp-mcp emulate`) or on a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


def _config(app: ASGIApp, own_logging: bool = True) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        # In someone else's process (tests, an embedding server) leave logging set-up alone.
        log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
        lifespan="auto",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve until interrupted."""
    config = _config(app)
    config.host, config.port = host, port
    uvicorn.Server(config).run()


class BackgroundServer:
    """uvicorn on a free loopback port in a daemon thread; `url` once entered.

    with BackgroundServer(create_app(ws, key)) as server:
        backend = TreasureDataBackend(server.url, key)
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.port = 0
        self._server = uvicorn.Server(_config(app, own_logging=False))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only then (else 40 ms per keep-alive call)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))  # bound here, so no other process can take the port
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="td-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the TD emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
