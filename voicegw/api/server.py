"""The control API's HTTP server: uvicorn, embedded on the daemon's own event loop.

No second thread: the routes read the engine's objects directly, which is only safe
on the loop that owns them. uvicorn's ``Server.serve()`` would install its own
SIGINT/SIGTERM handlers (the daemon's lifecycle owns those), so the server is driven
through its parts: ``startup()`` binds, ``main_loop()`` ticks (Date header, limits),
``shutdown()`` closes, bounded.

uvicorn logs through the stdlib; its records are forwarded to structlog here so the
daemon's stderr stays one JSON object per line. Access logs are off.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from typing import Any

import structlog
import uvicorn

from ..config.defaults import ApiConfig
from ..metrics import LoopLagMonitor, registry_for
from . import token as tokens
from .app import create_app
from .control import Control

log = structlog.get_logger("voicegw.api")


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        error = None
        if record.exc_info and record.exc_info[1] is not None:
            error = "".join(traceback.format_exception(record.exc_info[1]))
        getattr(log, level if level in ("debug", "info", "warning", "error") else "error")(
            "api.server", message=record.getMessage().strip(), logger=record.name, traceback=error)


def _quiet_uvicorn() -> None:
    handler = _ToStructlog(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING)


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port; OSError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(False)
    except OSError:
        sock.close()
        raise
    return sock


class ApiServer:
    def __init__(self, control: Control, config: ApiConfig) -> None:
        self.control = control
        self.config = config
        self.token = ""
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[Any] | None = None
        self.lag: LoopLagMonitor | None = None

    async def start(self) -> None:
        """Bind and serve. OSError when the port is taken; TokenError when the token
        file cannot be made."""
        config = self.config
        self.token = config.token or tokens.load_or_create(config.token_file)
        _quiet_uvicorn()
        registry, self.lag = registry_for(self.control)
        desk = getattr(self.control, "desk", None)
        tls = {}
        if desk is not None and desk.config.tls_cert_file:  # the desk's TLS (docs/security.md)
            tls = {"ssl_certfile": desk.config.tls_cert_file, "ssl_keyfile": desk.config.tls_key_file}
        server_config = uvicorn.Config(
            None, host=config.host, port=config.port, lifespan="off", access_log=False, log_config=None,
            server_header=False, timeout_graceful_shutdown=2, limit_concurrency=200, **tls,
        )
        server = uvicorn.Server(server_config)
        # the app needs the bound port (port 0: any free one) for its links, so bind first
        # (ourselves: uvicorn's bind_socket() calls sys.exit on a taken port)
        sockets = [_bind(config.host, config.port)]
        port = sockets[0].getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        app = create_app(self.control, self.token, (config.public_url or self.url).rstrip("/"))
        app.state.registry = registry
        server_config.app = app
        server_config.load()
        server.lifespan = server_config.lifespan_class(server_config)  # what serve() would set
        await server.startup(sockets=sockets)
        if server.should_exit:  # startup failed (logged by uvicorn)
            raise OSError(f"the control API could not start on {config.host}:{port}")
        self._server = server
        self._ticker = asyncio.get_running_loop().create_task(server.main_loop())
        self.lag.start()

    async def close(self) -> None:
        if self.lag is not None:
            self.lag.stop()
        server = self._server
        if server is None:
            return
        server.should_exit = True
        if self._ticker is not None:
            try:
                await asyncio.wait_for(self._ticker, 2)
            except Exception:  # noqa: BLE001 - a timeout or the ticker's own error: it stops either way
                self._ticker.cancel()
        try:
            await asyncio.wait_for(server.shutdown(), 3)
        except TimeoutError:
            log.warning("api.shutdown_timeout")
        self._server = None
