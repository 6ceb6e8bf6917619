"""The CLI's client for the control API: finds the daemon and its token, maps failures
to exit codes and one-line messages (never a traceback)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_API = "http://127.0.0.1:5080"
DEFAULT_TOKEN_FILE = "var/api.token"

# exit codes (docs/operations.md)
OK, FAILED, USAGE, NOT_RUNNING, AUTH = 0, 1, 2, 3, 4


class CliError(Exception):
    """Ends the command with ``code`` and ``message`` on stderr."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiClient:
    def __init__(self, api: str, token: str | None, token_file: str | None, timeout: float = 10.0) -> None:
        self.api = api.rstrip("/")
        self._token = token
        self._token_file = token_file or DEFAULT_TOKEN_FILE
        self._http = httpx.Client(base_url=self.api, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        if self._token:
            return self._token
        path = Path(self._token_file)
        try:
            token = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError as error:
            self._check_running()  # "not running" explains a missing token file best
            raise CliError(f"cannot read the API token from {path}: {error.strerror} "
                           "(pass --token or --token-file, or run where the daemon keeps var/)", AUTH) from None
        if not token:
            raise CliError(f"{path} is empty: pass --token or --token-file", AUTH)
        self._token = token
        return token

    def _check_running(self) -> None:
        try:
            self._http.get("/health", timeout=3)
        except httpx.HTTPError:
            raise self._not_running() from None

    def _not_running(self) -> CliError:
        return CliError(f"voicegw is not running (nothing answers at {self.api}); "
                        "start it with 'voicegw run' or pass --api URL", NOT_RUNNING)

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        """The decoded JSON body; CliError for anything but ``ok``."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise self._not_running() from None
        except httpx.HTTPError as error:
            raise CliError(f"the control API at {self.api} failed: {type(error).__name__}: {error}") from None
        if response.status_code == 401:
            raise CliError("the daemon refused the API token (401): check --token / --token-file", AUTH)
        if response.status_code in ok:
            return _json(response)
        raise CliError(_problem(response))

    def text(self, path: str) -> str:
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            response = self._http.get(path, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise self._not_running() from None
        if response.status_code == 401:
            raise CliError("the daemon refused the API token (401): check --token / --token-file", AUTH)
        if response.status_code != 200:
            raise CliError(_problem(response))
        return response.text


def call_path(call_id: str, *rest: str) -> str:
    return "/".join(["/calls", quote(call_id, safe=""), *rest])


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CliError(f"the control API answered {response.status_code} with no JSON") from None


def _problem(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return f"{detail or response.reason_phrase} ({response.status_code})"


def default_api() -> str:
    return os.environ.get("VOICEGW_API", DEFAULT_API)
