"""uvicorn for the supervisor's API (api.py), driven by parts as api/server.py does
(the supervisor owns the signals)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from ..api.server import _bind, _quiet_uvicorn
from ..config.defaults import ApiConfig
from .api import WorkerSet, create_app


class AggregateServer:
    def __init__(self, supervisor: WorkerSet, config: ApiConfig) -> None:
        self.supervisor = supervisor
        self.config = config
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[Any] | None = None
        self._app: Any = None

    async def start(self) -> None:
        """Bind and serve; OSError when the port is taken."""
        config = self.config
        _quiet_uvicorn()
        sockets = [_bind(config.host, config.port)]
        port = sockets[0].getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = (config.public_url or f"http://{host}:{port}").rstrip("/")
        self._app = create_app(self.supervisor)
        server_config = uvicorn.Config(self._app, host=config.host, port=port, lifespan="off", access_log=False,
                                       log_config=None, server_header=False, timeout_graceful_shutdown=2,
                                       limit_concurrency=200)
        server = uvicorn.Server(server_config)
        server_config.load()
        server.lifespan = server_config.lifespan_class(server_config)
        await server.startup(sockets=sockets)
        if server.should_exit:
            raise OSError(f"the control API could not start on {config.host}:{port}")
        self._server = server
        self._ticker = asyncio.get_running_loop().create_task(server.main_loop())

    async def close(self) -> None:
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
            pass
        await self._app.state.client.aclose()
        self._server = None
