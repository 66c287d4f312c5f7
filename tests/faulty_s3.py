"""An S3 server on loopback (moto) whose answers can fail, slow down or hang,
per HTTP method and key: the store outages of the reliability tests.

Every FaultyS3 in a test process serves moto's one in-process backend, so
several of them are several views of the same store: a replica pointed at one
can be cut off while another, pointed at a second, still reaches it.

    s3 = FaultyS3().start()           # s3.endpoint -> AWS_ENDPOINT_URL_S3 of a replica
    fault = s3.add(Fault("unavailable", method="PUT", key=r"/builds/"))
    ...
    s3.remove(fault)                  # or s3.clear(); fault.hits counts what it answered
"""
from __future__ import annotations

import dataclasses
import logging
import re
import socket
import threading
import time
import urllib.parse

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

ACTIONS = ("unavailable", "error", "denied", "reset", "lost", "hang", "delay")
_ERROR_BODY = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
               "<RequestId>fault</RequestId></Error>")


@dataclasses.dataclass(eq=False)
class Fault:
    """`action`: unavailable (503 SlowDown), error (500 InternalError), denied (403
    AccessDenied), reset (the connection is dropped, no answer), lost (the request
    is carried out, then the connection dropped: its answer is lost), hang (no
    answer for `seconds`, then 503), delay (the real answer after `seconds`).
    `method`: HTTP method, None for any.
    `key`: a regex searched in the unquoted "/bucket/key?query". `times`: how many
    requests it hits (None: until removed)."""
    action: str
    method: str | None = None
    key: str = ""
    seconds: float = 0.0
    times: int | None = None
    hits: int = 0

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        self._pattern = re.compile(self.key)

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and bool(self._pattern.search(target)) \
            and (self.times is None or self.hits < self.times)


class FaultyS3:
    def __init__(self, host: str = "127.0.0.1"):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)     # no line per request
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._backend = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(host, 0, self._app, threaded=True, request_handler=MotoRequestHandler)
        self.endpoint = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FaultyS3":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, target):
                    fault.hits += 1
                    return fault
        return None

    def _app(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        target = urllib.parse.unquote(environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""))
        fault = self._take(method, target)
        if fault is None:
            return self._backend(environ, start_response)
        if fault.action == "delay":
            time.sleep(fault.seconds)
            return self._backend(environ, start_response)
        if fault.action == "lost":
            b"".join(self._backend(environ, lambda *args, **kwargs: None))
        else:
            _drain_body(environ)
        if fault.action in ("reset", "lost"):
            connection = environ["werkzeug.socket"]
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.shutdown(socket.SHUT_RDWR)
            start_response("503 Slow Down", [])      # written to a closed socket: werkzeug lets it go
            return []
        if fault.action == "hang":
            time.sleep(fault.seconds)
        status, code = {"error": ("500 Internal Server Error", "InternalError"),
                        "denied": ("403 Forbidden", "AccessDenied")}.get(fault.action, ("503 Slow Down", "SlowDown"))
        body = _ERROR_BODY.format(code=code, message=f"fault injected: {fault.action}").encode()
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]


def _drain_body(environ) -> None:
    """Read the request body, so that the client sees the answer, not a broken pipe."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    while length > 0:
        chunk = stream.read(min(length, 1 << 20))
        if not chunk:
            break
        length -= len(chunk)
