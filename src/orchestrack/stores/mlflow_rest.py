"""A small client for MLflow's tracking REST API (``/api/2.0/mlflow/...``), the same on MLflow 2.x
and 3.x servers and on Databricks.

Workers and pods talk to the tracking server through this instead of the ``mlflow`` package: it
needs only ``requests`` (3 MB, five distributions, 0.25 s to import) where ``mlflow-skinny`` 3.17
is 70 MB, 41 distributions and 2.7 s to import. Authentication follows MLflow's own environment
variables, so a worker set up for MLflow needs nothing more:

- ``MLFLOW_TRACKING_TOKEN`` (bearer token) or ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
- ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``
- for ``databricks`` URIs: ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``, or a ``~/.databrickscfg`` profile

Secrets never appear in an error message or log line: errors name the server, the endpoint and
MLflow's own error code and message.
"""

from __future__ import annotations

import configparser
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrack.errors import InvalidInputError, MissingExtraError, StoreError

#: Transient answers worth another try (MLflow's SQLite backend answers 500 "database is locked").
_RETRY_STATUSES = {429, 500, 502, 503, 504}
#: What an overloaded MLflow server says, whatever status it gives it (MLflow 3 answers a full
#: database connection pool with 400 BAD_REQUEST): worth trying again, unlike a request it rejects.
_OVERLOADED = re.compile(r"QueuePool limit|database is locked|too many (?:connections|clients)"
                         r"|connection timed out|could not connect to server|server closed the connection", re.I)


class MlflowApiError(StoreError):
    """MLflow answered an error: ``error_code`` is MLflow's (``RESOURCE_ALREADY_EXISTS`` ...)."""

    def __init__(self, message: str, error_code: str, status: int) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later: throttled, a server fault, or a server out of
        database connections (not a request MLflow rejects for what it is)."""
        return self.status in _RETRY_STATUSES or bool(_OVERLOADED.search(str(self)))


def _databricks_host_and_token(profile: str | None) -> tuple[str, str | None]:
    host, token = os.environ.get("DATABRICKS_HOST"), os.environ.get("DATABRICKS_TOKEN")
    if host and not profile:
        return host, token
    config = configparser.ConfigParser()
    path = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg").expanduser()
    config.read(path)
    section = profile or "DEFAULT"
    if not config.has_option(section, "host"):
        raise InvalidInputError(
            f"tracking URI 'databricks{'://' + profile if profile else ''}': no Databricks host; set "
            f"DATABRICKS_HOST and DATABRICKS_TOKEN, or a [{section}] profile with host and token in {path}")
    return config.get(section, "host"), config.get(section, "token", fallback=None)


class MlflowRestClient:
    """JSON over HTTP to one tracking server, with retries on transient failures.

    Example::

        client = MlflowRestClient("http://127.0.0.1:5000")
        client.call("GET", "experiments/get-by-name", experiment_name="Default")
    """

    def __init__(self, tracking_uri: str, *, timeout_s: float = 30.0, attempts: int = 5) -> None:
        """``timeout_s`` bounds one whole :meth:`call`, every retry included, so a server that accepts
        and never answers costs at most that long; ``attempts`` caps the tries within it."""
        try:
            import requests
        except ImportError as err:  # pragma: no cover - the extra pulls it in
            raise MissingExtraError(
                f"tracking URI {tracking_uri!r} needs the MLflow store's dependency: pip install 'orchestrack[mlflow]'"
            ) from err
        self._requests = requests
        self.tracking_uri = tracking_uri
        self.timeout_s = timeout_s
        self.attempts = attempts
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if tracking_uri == "databricks" or tracking_uri.startswith("databricks://"):
            host, token = _databricks_host_and_token(tracking_uri.partition("://")[2] or None)
            self.base_url = host.rstrip("/")
            self.ui_base_url = self.base_url + "/ml"
        else:
            self.base_url = tracking_uri.rstrip("/")
            self.ui_base_url = self.base_url
        self._headers = {"Content-Type": "application/json", "User-Agent": "orchestrack"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        self._auth = (username, password) if username and password else None
        insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true")
        self._verify: bool | str = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
        self._cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
        self._local = threading.local()

    def _session(self) -> Any:
        # One keep-alive session per thread (requests sessions are not thread-safe) and per process.
        session = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != os.getpid():
            session = self._requests.Session()
            session.headers.update(self._headers)
            session.auth = self._auth
            session.verify = self._verify
            session.cert = self._cert
            self._local.session, self._local.pid = session, os.getpid()
        return session

    def call(self, method: str, endpoint: str, body: dict[str, Any] | None = None, **query: Any) -> dict[str, Any]:
        """Call ``/api/2.0/mlflow/<endpoint>``; return the JSON answer or raise :class:`MlflowApiError`."""
        url = f"{self.base_url}/api/2.0/mlflow/{endpoint}"
        last: Exception | None = None
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(self.attempts):
            if attempt:
                pause = min(4.0, 0.1 * 2 ** attempt) * (0.5 + random.random())
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = self._session().request(method, url, json=body, params=query or None, timeout=left)
            except self._requests.RequestException as err:
                waited = isinstance(err, self._requests.Timeout)
                last = StoreError(
                    f"cannot reach the MLflow tracking server at {self.base_url} ({endpoint}): {type(err).__name__}"
                    + (f" (no answer within {self.timeout_s:g} s; ORCHESTRACK_MLFLOW__TIMEOUT_S)" if waited else "")
                    + "; check ORCHESTRACK_TRACKING_URI and that the server is up")
                continue
            if response.status_code < 400:
                return self._answer(response, endpoint)
            error = self._error(response, endpoint)
            if not error.transient:
                raise error
            last = error
        if last is None:
            last = StoreError(f"the MLflow tracking server at {self.base_url} did not answer {endpoint} within "
                              f"{self.timeout_s:g} s (ORCHESTRACK_MLFLOW__TIMEOUT_S); check that the server is up")
        raise last

    def _answer(self, response: Any, endpoint: str) -> dict[str, Any]:
        """A successful answer's JSON object; anything else (an HTML page from a proxy or a login
        wall, a truncated body) is an error naming what came back."""
        if not response.content:
            return {}
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            kind = response.headers.get("Content-Type", "unknown content")
            sample = " ".join(response.text[:80].split())
            raise MlflowApiError(
                f"MLflow at {self.base_url} answered {endpoint} with {kind} that is not a JSON object "
                f"({sample!r}); is ORCHESTRACK_TRACKING_URI the tracking server itself, not a proxy, login page "
                "or UI address?", "INVALID_RESPONSE", response.status_code)
        return answer

    def _error(self, response: Any, endpoint: str) -> MlflowApiError:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        code = str(answer.get("error_code") or f"HTTP_{response.status_code}")
        lines = str(answer.get("message") or response.text[:300]).strip().splitlines()
        message = (lines or ["(empty answer)"])[0][:500]
        hint = ""
        if response.status_code in (401, 403):
            hint = "; set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD for this server"
        elif response.status_code == 404 and code.startswith("HTTP_"):
            hint = f"; is {self.base_url} an MLflow tracking server (ORCHESTRACK_TRACKING_URI)?"
        elif response.status_code in _RETRY_STATUSES:
            hint = (f"; the server kept failing for {self.timeout_s:g} s (ORCHESTRACK_MLFLOW__TIMEOUT_S): check its "
                    "logs and health, then `orchestrack replay` sends what was spooled meanwhile")
        return MlflowApiError(f"MLflow at {self.base_url} refused {endpoint}: {code}: {message}{hint}",
                              code, response.status_code)

    def pages(self, endpoint: str, body: dict[str, Any], items: str, *, method: str = "POST"
              ) -> Iterator[dict[str, Any]]:
        """Every item of a paged search, page after page: a POST with ``body`` (``runs/search``,
        ``experiments/search``), or a GET with ``body`` as the query (``model-versions/search``,
        ``registered-models/search``)."""
        body = dict(body)
        while True:
            answer = self.call("POST", endpoint, body) if method == "POST" else self.call(method, endpoint, **body)
            yield from answer.get(items, [])
            token = answer.get("next_page_token")
            if not token:
                return
            body["page_token"] = token

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """Every point of one metric of one run, reading every page."""
        points: list[dict[str, Any]] = []
        query: dict[str, Any] = {"run_id": run_id, "metric_key": key}
        while True:
            answer = self.call("GET", "metrics/get-history", **query)
            points.extend(answer.get("metrics", []))
            token = answer.get("next_page_token")
            if not token:
                return points
            query["page_token"] = token
