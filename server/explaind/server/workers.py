"""`explaind serve --workers N`: N serving processes on one gRPC port.

One Python process is bound by its interpreter lock long before a GPU or a
many-core CPU is busy. The kernel spreads incoming connections over processes
that listen on the same port with SO_REUSEPORT (the server sets it), so N
workers serve N times the calls. They share nothing but the store, exactly
like replicas: any worker can take an upload, and every worker loads every
published model. Worker i serves metrics on metrics_port + i.
"""
from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
import time

from .announce import announce
from .config import Settings, flag_of


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def worker_settings(settings: Settings) -> Settings:
    """The machine planned once (serving/cpu.py): each worker gets its share of
    the cores as explicit thread counts, rather than planning for all of them."""
    from .serving.cpu import planned_settings, plan_threads, serving_on_gpu

    return planned_settings(settings, plan_threads(settings, gpu=serving_on_gpu(settings)))


def worker_command(settings: Settings, index: int) -> list[str]:
    """The command of worker `index` (settings as worker_settings made them)."""
    cmd = [sys.executable, "-m", "explaind.server.main", "serve"]
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if field.name == "workers":
            value = 1
        elif field.name == "metrics_port" and value:
            value = value + index
        cmd += [flag_of(field.name), str(value)]
    return cmd


def run_workers(settings: Settings) -> int:
    """Starts the workers (`settings` as worker_settings planned them), forwards
    SIGTERM/SIGINT, returns the worst exit code."""
    if settings.port == 0:
        settings = dataclasses.replace(settings, port=_free_port(settings.host))
    children = [subprocess.Popen(worker_command(settings, i)) for i in range(settings.workers)]
    stopping = False

    def forward(sig, _frame):
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    announce(f"explaind supervising {settings.workers} workers on port {settings.port}")
    while any(child.poll() is None for child in children):
        if not stopping and any(child.poll() is not None for child in children):
            # A worker died on its own: stop the others rather than serve at reduced capacity silently.
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return max(child.returncode for child in children)
