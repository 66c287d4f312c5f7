"""/metrics over TLS (--metrics-tls), with certificates that rotate.

prometheus_client's own TLS server wraps the listening socket, so each TLS
handshake runs in its one accepting thread: a client that connects and says
nothing stalls every scrape. Here each connection is handed to its own
thread first and shakes hands there, with a timeout.
"""
from __future__ import annotations

import socket
import ssl
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

HANDSHAKE_TIMEOUT_S = 10.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class _TlsServer(ThreadingWSGIServer):
    ssl_context: ssl.SSLContext

    def get_request(self):
        sock, address = self.socket.accept()
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        # The handshake happens on the first read, in the connection's own thread.
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        pass   # a failed handshake or a client gone: nothing for the server's log


def start_tls_metrics_server(port: int, registry, ssl_context: ssl.SSLContext, addr: str = "0.0.0.0"):
    """(server, bound port); stop it like the plain one (shutdown, server_close)."""

    class Server(_TlsServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    Server.ssl_context = ssl_context
    server = make_server(addr, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-tls", daemon=True).start()
    return server, server.server_port
