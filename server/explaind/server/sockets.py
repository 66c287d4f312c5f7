"""Closes this process's TCP sockets on one port: the listener, then every
accepted connection (used by shutdown.py, after the drain).

Why: grpc.aio's `server.stop()` refuses the calls that reach it while it stops
(those the transport has accepted but the application has not picked up yet,
and those racing its GOAWAY) with RST_STREAM(CANCEL), which clients see as
CANCELLED, a status no retry policy retries. A connection that closes under
a call makes the client fail it with UNAVAILABLE instead, the status that
means "not processed, try again". So once the drain has let every accepted
call finish, the server closes its own sockets before it stops: new
connections are refused, calls in transit fail with UNAVAILABLE, and
`server.stop()` then has nothing left to refuse.

The sockets are found by their local port among the process's file
descriptors and `shutdown()`, never closed: the descriptors still belong to
gRPC, which closes them as it stops. Where the descriptors cannot be listed
(no /proc/self/fd or /dev/fd) nothing is done, and stop() behaves as before.
"""
from __future__ import annotations

import logging
import os
import socket
import stat

log = logging.getLogger(__name__)

_FD_DIRS = ("/proc/self/fd", "/dev/fd")


def _open_fds() -> list[int]:
    for folder in _FD_DIRS:
        try:
            return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
        except OSError:
            continue
    return []


def _tcp_socket_on(fd: int, port: int) -> socket.socket | None:
    """A socket object sharing `fd` if it is a TCP socket bound to `port` (detach() it after use)."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM \
                and sock.getsockname()[1] == port:
            return sock
    except OSError:
        pass
    sock.detach()
    return None


def shut_down_port(port: int) -> tuple[int, int]:
    """Shuts down the listener(s) on `port`, then the connections accepted on it.
    Returns (listeners, connections) shut down."""
    if port <= 0:
        return 0, 0
    listeners, connections = [], []
    for fd in _open_fds():
        sock = _tcp_socket_on(fd, port)
        if sock is None:
            continue
        try:
            accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            accepting = 0
        (listeners if accepting else connections).append(sock)
    counts = []
    # Listeners first: a client whose connection is closed reconnects at once, and
    # must find the port refusing (or another process of the port group) rather
    # than a fresh connection to a server about to stop.
    for group in (listeners, connections):
        done = 0
        for sock in group:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
            except OSError:
                pass            # already closed by the peer or by gRPC
            finally:
                sock.detach()
        counts.append(done)
    log.info("sockets on the serving port shut down",
             extra={"port": port, "listeners": counts[0], "connections": counts[1]})
    return counts[0], counts[1]
