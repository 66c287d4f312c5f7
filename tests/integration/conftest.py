"""Fixtures for tests that run the real daemon as a child process.

Every test here is in the slow tier (`pytest -m "not slow"` leaves them out):
each starts daemons, which import TensorFlow and build real indexes, or
servers (S3, DNS, Ray) beside them. CI runs them all.
"""
from __future__ import annotations

import pathlib

import pytest

from tests.server_process import ServerProcess

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


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
