"""`explaind serve`: settings from flags and the environment, then one daemon
or several worker processes. The rest of the `explaind` command is the client's
(explaind.client.cli); `python -m explaind.server.main` runs the same command."""
from __future__ import annotations

import asyncio
import os
import sys

from . import config


def serve_command(args) -> int:
    # OpenMP threads (FAISS) that spin while they wait turn every parallel region
    # into a wait for a time slice when the node's cores are busy (other pods, CPU
    # limits, the gRPC threads): FAISS training measured 70 s instead of 2.5 s on a
    # loaded 2-core machine. Sleeping waiters cost little; set before FAISS loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        settings = config.resolve(args)     # before the heavy imports: a typo fails at once
        from .builds.runners import check_settings
        check_settings(settings)
    except ValueError as e:         # config.SettingsError, or a runner setting: one line, exit 2
        print(f"explaind serve: {e}", file=sys.stderr)
        return 2
    from .app import serve
    from .logging_setup import configure_logging
    if settings.workers != 1:
        from .workers import worker_settings
        settings = worker_settings(settings)     # 0 workers: from the cores (planned once, here)
    if settings.workers > 1:
        from .workers import run_workers
        return run_workers(settings)
    configure_logging(settings.log_level, json_format=settings.log_json)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    except config.SettingsError as e:     # security settings, checked as the daemon starts
        print(f"explaind serve: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    from explaind.client.cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
