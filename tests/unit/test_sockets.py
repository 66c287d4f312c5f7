"""shut_down_port: this process's listener and accepted connections on one port
are shut down (not closed); other sockets, clients of that port included, are left alone."""
from __future__ import annotations

import os
import socket

import pytest

from explaind.server.sockets import shut_down_port

pytestmark = pytest.mark.timeout(30)


def test_listener_and_accepted_connections_are_shut_down_and_nothing_else():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    other = socket.create_server(("127.0.0.1", 0))           # another port: untouched
    client = socket.create_connection(("127.0.0.1", port))   # its local port is not `port`
    accepted, _ = listener.accept()
    other_client = socket.create_connection(other.getsockname())
    other_accepted, _ = other.accept()
    try:
        assert shut_down_port(port) == (1, 1)

        # The accepted connection is shut down: its peer reads end of stream.
        client.settimeout(5)
        assert client.recv(1) == b""
        # The listener refuses new connections.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # Descriptors still open (gRPC owns and closes them).
        os.fstat(listener.fileno())
        os.fstat(accepted.fileno())
        # The other port's sockets still work both ways.
        other_client.sendall(b"x")
        other_accepted.settimeout(5)
        assert other_accepted.recv(1) == b"x"
        with socket.create_connection(other.getsockname(), timeout=5):
            pass
    finally:
        for s in (listener, other, client, accepted, other_client, other_accepted):
            s.close()


def test_ipv6_dual_stack_listener_is_found():
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this host")
    listener = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    try:
        assert shut_down_port(port) == (1, 1)
        client.settimeout(5)
        assert client.recv(1) == b""
    finally:
        for s in (listener, client, accepted):
            s.close()


def test_nothing_on_the_port_and_port_zero():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free = probe.getsockname()[1]
    assert shut_down_port(free) == (0, 0)
    assert shut_down_port(0) == (0, 0)
