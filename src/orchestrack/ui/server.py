"""``orchestrack ui``: a small read-only web app over any store, on the standard library's HTTP server.

Routes: ``/`` (runs, filtered by query), ``/runs/<run>``, ``/compare?run=A&run=B``, ``/failures``,
``/artifacts/<run_id>/<artifact name>`` (bytes from the configured artifact store only, see
:mod:`orchestrack.ui.artifacts`) and ``/assets/<file>``. Only GET and HEAD are answered; anything
else is 405. Bound to a non-loopback address, every request needs the access token (``?token=``,
which also sets an HttpOnly cookie, or ``Authorization: Bearer``).

Example::

    server = make_server("127.0.0.1", 8765, UiConfig(tracking_uri=None, artifact_uri="/tmp/artifacts"))
    server.serve_forever()
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orchestrack
from orchestrack.errors import InvalidInputError, ModelNotFoundError, OrchestrackError, RunNotFoundError
from orchestrack.record import RunRecord, RunStatus
from orchestrack.registry import ModelVersion, open_registry, versions_of_run
from orchestrack.ui import pages
from orchestrack.ui.artifacts import artifact_source, chunks, folder_members, write_zip

log = logging.getLogger(__name__)

#: Nothing loads from anywhere but this server; no inline script, no framing, no form posts elsewhere.
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
#: The only files under /assets/ (a name from the URL is looked up here, never joined into a path).
ASSETS = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
RUN_LIMIT = 200
_TOKEN_IN_PATH = re.compile(r"(token=)[^&\s]*")


@dataclass(frozen=True)
class UiConfig:
    """What the server reads: the run store, the artifact store, and the token it requires (if any)."""

    tracking_uri: str | None
    artifact_uri: str
    token: str | None = None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class UiServer(ThreadingHTTPServer):
    """The HTTP server, holding its :class:`UiConfig`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: UiConfig) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.config = config


def make_server(host: str, port: int, config: UiConfig) -> UiServer:
    """A server bound to ``host:port`` (port 0: any free one), not yet serving."""
    return UiServer((host, port), config)


class Handler(BaseHTTPRequestHandler):
    """One request: check the token, route, render, answer."""

    server: UiServer
    server_version = "orchestrack-ui"
    sys_version = ""

    # -- plumbing -------------------------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Access log through logging, the token cut out of the request line."""
        log.info("%s %s", self.address_string(), _TOKEN_IN_PATH.sub(r"\1***", format % args))

    def _headers(self, status: int, content_type: str, length: int | None, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                            "X-Frame-Options": "DENY", **extra}.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: str | bytes, content_type: str = "text/html; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._headers(status, content_type, len(data), {**self._cookie, **(extra or {})})
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, pages.error_page(status.value, message), extra=extra)

    # -- methods --------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        """Answer a read."""
        self._cookie: dict[str, str] = {}
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._authorized(query):
            return
        try:
            self._route(url.path, query)
        except (RunNotFoundError, ModelNotFoundError) as err:
            self._error(HTTPStatus.NOT_FOUND, str(err))
        except InvalidInputError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
        except OrchestrackError as err:
            log.warning("store error on %s: %s", url.path, err)
            self._error(HTTPStatus.BAD_GATEWAY, str(err))

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self._cookie = {}
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "This UI is read-only: only GET and HEAD are answered.",
                    extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    # -- access ---------------------------------------------------------------------------------

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        """True when no token is required or a right one came; else answers 401 or 403."""
        token = self.server.config.token
        if token is None:
            return True
        cookie_name = f"orchestrack_ui_{self.server.server_address[1]}"
        offered = query.get("token", [""])[-1]
        if offered and hmac.compare_digest(offered.encode(), token.encode()):
            self._cookie = {"Set-Cookie": f"{cookie_name}={token}; HttpOnly; SameSite=Strict; Path=/"}
            return True
        header = self.headers.get("Authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("Cookie", ""))
        morsel = jar.get(cookie_name)
        for candidate in (bearer, morsel.value if morsel else ""):
            if candidate and hmac.compare_digest(candidate.encode(), token.encode()):
                return True
        if offered or bearer or morsel:
            self._error(HTTPStatus.FORBIDDEN, "That access token is not this server's.")
        else:
            self._error(HTTPStatus.UNAUTHORIZED, "This page needs the access token: open the address with "
                        "?token= that `orchestrack ui` printed when it started.", extra={"WWW-Authenticate": "Bearer"})
        return False

    # -- routes ---------------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
            "/": self._runs, "/runs": self._runs, "/compare": self._compare, "/failures": self._failures}
        if path in routes:
            routes[path](query)
        elif path.startswith("/runs/") and len(path) > len("/runs/"):
            record = self._get(unquote(path[len("/runs/"):]))
            self._send(HTTPStatus.OK, pages.run_page(record, versions=self._versions_of(record)))
        elif path == "/models":
            registry = open_registry(self.server.config.tracking_uri)
            latest = [versions[0] for versions in map(registry.versions, registry.models()) if versions]
            self._send(HTTPStatus.OK, pages.models_page(latest))
        elif path.startswith("/models/") and len(path) > len("/models/"):
            name = unquote(path[len("/models/"):])
            versions = open_registry(self.server.config.tracking_uri).versions(name)
            if not versions:
                raise ModelNotFoundError(f"No model named {name!r} has a version; promote a run to it with "
                                         f"`orchestrack promote RUN --model {name}`.")
            self._send(HTTPStatus.OK, pages.model_page(name, versions))
        elif path.startswith("/artifacts/"):
            self._artifact(path[len("/artifacts/"):])
        elif path.startswith("/assets/") and path[len("/assets/"):] in ASSETS:
            name = path[len("/assets/"):]
            self._send(HTTPStatus.OK, pages.asset(name), ASSETS[name])
        else:
            self._error(HTTPStatus.NOT_FOUND, "No such page.")

    def _versions_of(self, record: RunRecord) -> list[ModelVersion]:
        """The model versions promoted from ``record`` (none when the registry cannot be read: the run
        page still shows)."""
        try:
            return versions_of_run(record, open_registry(self.server.config.tracking_uri))
        except Exception as err:
            log.warning("orchestrack ui: cannot read the model registry for run %s: %s", record.run_id, err)
            return []

    def _get(self, ref: str) -> RunRecord:
        return orchestrack.get_run(ref, tracking_uri=self.server.config.tracking_uri)

    def _runs(self, query: dict[str, list[str]]) -> None:
        filters = {name: query.get(name, [""])[-1].strip() for name in pages.FILTERS}
        chosen: dict[str, Any] = {k: v or None for k, v in filters.items()}  # the filter fields only
        found = orchestrack.search_runs(**chosen, limit=RUN_LIMIT, tracking_uri=self.server.config.tracking_uri)
        self._send(HTTPStatus.OK, pages.runs_page(found, filters, limit=RUN_LIMIT))

    def _compare(self, query: dict[str, list[str]]) -> None:
        refs = list(dict.fromkeys(ref for ref in query.get("run", []) if ref))
        if len(refs) < 2:
            self._error(HTTPStatus.BAD_REQUEST, "Tick at least two runs to compare (/compare?run=A&run=B).")
            return
        self._send(HTTPStatus.OK, pages.compare_page([self._get(ref) for ref in refs]))

    def _failures(self, query: dict[str, list[str]]) -> None:
        pipeline = query.get("pipeline", [""])[-1].strip() or None
        found = [record for status in (RunStatus.FAILED, RunStatus.CANCELLED)
                 for record in orchestrack.search_runs(status=status, pipeline=pipeline, limit=RUN_LIMIT,
                                                       tracking_uri=self.server.config.tracking_uri)]
        self._send(HTTPStatus.OK, pages.failures_page(found, pipeline=pipeline))

    # -- artifacts ------------------------------------------------------------------------------

    def _artifact(self, rest: str) -> None:
        """Serve a run's artifact by name, only from the configured artifact store; 404 otherwise."""
        run_id, _, name = rest.partition("/")
        try:
            found = self._get(unquote(run_id)) if run_id and name else None
        except RunNotFoundError:
            found = None
        matches = [a for a in found.artifacts if a.name == unquote(name)] if found else []
        source = artifact_source(self.server.config.artifact_uri) if matches else None
        blob = source.locate(matches[-1].uri) if source else None
        if source is None or blob is None:
            self._error(HTTPStatus.NOT_FOUND, "No such artifact in this server's artifact store.")
            return
        filename = matches[-1].name.replace("/", "_")
        files = source.manifest(blob)
        if files is None:
            self._download(filename, "application/octet-stream", source.size(blob))
            if self.command != "HEAD":
                for chunk in chunks(source, blob):
                    self.wfile.write(chunk)
            return
        members = folder_members(source, files)
        if members is None:
            self._error(HTTPStatus.NOT_FOUND, "That folder artifact's manifest names files outside the store.")
            return
        self._download(f"{filename}.zip", "application/zip", None)
        if self.command != "HEAD":
            write_zip(source, members, self.wfile)

    def _download(self, filename: str, content_type: str, length: int | None) -> None:
        """Headers of an attachment (never shown inline, so an HTML artifact cannot run as this site)."""
        ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
        self._headers(HTTPStatus.OK, content_type, length, {
            **self._cookie,
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"})
