"""The demo's HTTP side: a `ThreadingHTTPServer` with the page and two JSON endpoints.

The standard library is enough for a one-user local demo and adds no dependency. Every answer of
the API is JSON; failures are ``{"error": "<one line>"}`` with 400 (the client's fault), 404/405/413
or 500 (ours), so the page can show the reason and no traceback ever reaches the browser.
"""

from __future__ import annotations

import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from artok.app.page import PAGE
from artok.app.service import DemoService, RequestError

#: Largest request body read: a sample request is about 150 bytes.
MAX_BODY_BYTES = 16 * 1024

#: A refused body up to this size is read before answering (see `DemoHandler._discard`).
MAX_DISCARD_BYTES = 1024 * 1024

# The page is self-contained: forbid every external load, so a stray asset cannot slip in unnoticed.
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                           "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'")


class BodyTooLargeError(RequestError):
    """A body over `MAX_BODY_BYTES`: answered with 413."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class DemoServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the `DemoService` its handlers answer from."""

    daemon_threads = True  # Ctrl-C must not wait for a sampling request to finish

    def __init__(self, address, service: DemoService, log_requests: bool = True) -> None:
        self.service = service
        self.log_requests = log_requests
        super().__init__(address, DemoHandler)

    def handle_error(self, request, client_address) -> None:
        """One line instead of socketserver's traceback (e.g. a browser that closed the connection)."""
        error = sys.exc_info()[1]
        print(f"artok app: request from {client_address[0]} failed: {_one_line(error)}", file=sys.stderr, flush=True)


class DemoServer6(DemoServer):
    """`DemoServer` on an IPv6 address (``--host ::1``)."""

    address_family = socket.AF_INET6


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


class DemoHandler(BaseHTTPRequestHandler):
    """Routes ``GET /``, ``GET /api/info`` and ``POST /api/sample``; anything else is a JSON 404/405."""

    server: DemoServer
    server_version = "artok-app"
    sys_version = ""  # no Python version in the Server header
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # the name http.server dispatches to
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/api/info":
            self._send_json(HTTPStatus.OK, self.server.service.info())
        elif path == "/api/sample":
            self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "POST a JSON object to /api/sample")
        else:
            self._send_error(HTTPStatus.NOT_FOUND, f"no page at {path[:80]}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/api/sample":
            self._send_error(HTTPStatus.NOT_FOUND if path != "/api/info" else HTTPStatus.METHOD_NOT_ALLOWED,
                             f"no POST endpoint at {path[:80]}")
            return
        try:
            request = self.server.service.parse(self._json_body())
        except RequestError as error:
            self._send_error(HTTPStatus(error.status), str(error))
            return
        try:
            result = self.server.service.sample(request)
        except Exception as error:  # noqa: BLE001 - any sampling failure becomes one line, not a traceback
            message = f"sampling failed: {_one_line(error)}"
            print(f"artok app: {message}", file=sys.stderr, flush=True)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, message)
            return
        self._send_json(HTTPStatus.OK, result)

    def _json_body(self):
        """The decoded JSON body; RequestError (400, or 413 when too large) for anything else."""
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text)
        except (TypeError, ValueError):
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True  # an unread body must not be parsed as the next request
        if length < 0:
            raise RequestError("send the JSON body with a valid Content-Length header")
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise BodyTooLargeError(f"request body of {length} bytes is larger than {MAX_BODY_BYTES}")
        body = self.rfile.read(length)
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RequestError(f"the request body is not JSON: {' '.join(str(error).split())[:120]}") from None

    def _discard(self, length: int) -> None:
        """Read and drop a refused body of moderate size: closing a socket with unread data resets the
        connection, and the client would see that instead of the 413 and its reason."""
        remaining = length if length <= MAX_DISCARD_BYTES else 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)

    def _send_json(self, status: HTTPStatus, payload: dict) -> None:
        # allow_nan=False: the answer is strict JSON that every client parses.
        body = json.dumps(payload, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json")

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status, {"error": " ".join(message.split())})

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if self.server.log_requests:
            sys.stderr.write(f"artok app: {self.address_string()} {format % args}\n")


def make_server(service: DemoService, host: str = "127.0.0.1", port: int = 7860,
                log_requests: bool = True) -> DemoServer:
    """A bound, not yet serving, `DemoServer`; ``port=0`` takes a free port (see `server_url`).

    A busy port or an unknown host raises ValueError with one line, as other user errors do."""
    server_class = DemoServer6 if ":" in host else DemoServer
    try:
        return server_class((host, port), service, log_requests=log_requests)
    except OSError as error:
        reason = error.strerror or " ".join(str(error).split())
        raise ValueError(f"cannot listen on {host}:{port}: {reason}") from None


def server_url(server: DemoServer) -> str:
    """The address a browser opens: the real port (after ``port=0``), IPv6 hosts in brackets."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
