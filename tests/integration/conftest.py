"""Fixtures for tests that run the real daemon as a child process."""
from __future__ import annotations

import pytest

from tests.server_process import ServerProcess


@pytest.fixture
def start_server(tmp_path_factory):
    """start_server(store=None, env=None, **settings) -> a started ServerProcess, stopped at teardown."""
    started: list[ServerProcess] = []

    def start(store: str | None = None, env: dict | None = None, **settings) -> ServerProcess:
        base = tmp_path_factory.mktemp("server")
        server = ServerProcess(store or str(base / "store"), str(base / "server.log"), env=env,
                               cache_dir=str(base / "cache"), **settings)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.kill()
