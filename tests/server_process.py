"""Runs `explaind serve` as a real child process on free loopback ports."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import grpc

from explaind.client import Client

READY = re.compile(r"explaind listening on port (\d+) \(metrics on (\d+)(?:.*health on (\d+))?")
HTTP = re.compile(r"http on (\d+)")


class ServerProcess:
    def __init__(self, store: str, log_path: str, env: dict | None = None, **settings):
        """`settings` become `explaind serve` flags; `env`: variables set for this process only
        (say, its own S3 endpoint, or a PYTHONPATH that hides TensorFlow)."""
        self.store = store
        self.log_path = log_path
        self.env = env or {}
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0          # the REST port: off unless a test passes http_port (pick_free_port())
        self.health_port = 0       # with --health-port

    def start(self, timeout: float = 180) -> "ServerProcess":
        cmd = [sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "0", "--store", self.store]
        if "http_port" not in self.settings:
            cmd += ["--http-port", "0"]     # not the default 8080: tests run side by side
        for key, value in self.settings.items():
            cmd += ["--" + key.replace("_", "-"), str(value)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_tail()}")
                continue
            match = READY.search(line)
            if match:
                self.port, self.metrics_port = int(match.group(1)), int(match.group(2))
                http = HTTP.search(line)
                self.http_port = int(http.group(1)) if http else 0
                self.health_port = int(match.group(3) or 0)
                return self
        self.kill()
        raise RuntimeError(f"server did not start in {timeout}s; log: {self.log_tail()}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.target)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


def pick_free_port() -> int:
    """A loopback port nobody listens on now, for settings that take a fixed port
    (the REST port, where 0 means off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
