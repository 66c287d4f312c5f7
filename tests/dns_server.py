"""A tiny authoritative DNS server on loopback for tests: answers A queries for
the names it is given (several addresses per name) and nothing else. It lets a
test use a real `dns:///` target with several A records, as a Kubernetes
headless Service gives, without touching the machine's resolver."""
from __future__ import annotations

import socket
import struct
import threading

TYPE_A = 1


class DnsServer:
    def __init__(self, records: dict[str, list[str]], host: str = "127.0.0.1"):
        self.records = {name.rstrip(".").lower(): addresses for name, addresses in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            try:
                self.sock.sendto(self._answer(packet), peer)
            except (ValueError, struct.error, IndexError):
                continue   # not a query we understand: stay silent, like a real server under garbage

    def _answer(self, packet: bytes) -> bytes:
        query_id, _flags, qdcount = struct.unpack(">HHH", packet[:6])
        if qdcount != 1:
            raise ValueError("one question per query")
        labels, offset = [], 12
        while packet[offset]:
            length = packet[offset]
            labels.append(packet[offset + 1: offset + 1 + length].decode().lower())
            offset += 1 + length
        offset += 1
        qtype, _qclass = struct.unpack(">HH", packet[offset: offset + 4])
        question = packet[12: offset + 4]
        name = ".".join(labels)
        self.queries.append((name, qtype))
        addresses = self.records.get(name, []) if qtype == TYPE_A else []
        rcode = 0 if name in self.records else 3                  # NXDOMAIN for unknown names
        header = struct.pack(">HHHHHH", query_id, 0x8400 | rcode, 1, len(addresses), 0, 0)   # QR, AA
        answers = b"".join(struct.pack(">HHHIH", 0xC00C, TYPE_A, 1, 5, 4) + socket.inet_aton(a)
                           for a in addresses)
        return header + question + answers
