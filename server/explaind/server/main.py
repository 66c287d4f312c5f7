"""The `explaind` command: serve, upload, operations, explain, models, metadata."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from . import config


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter is not for users; EXPLAIND logs say what matters.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="explaind", description="gRPC daemon for ML explanations")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    config.add_arguments(serve)

    def client_parser(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target", default="localhost:8500", help="daemon address (host:port)")
        return p

    upload = client_parser("upload", "upload a model (starts a build operation)")
    upload.add_argument("model", help="the Model as JSON: a file path, or '-' for stdin "
                                      "(Vertex AI's model payload parses unchanged)")
    upload.add_argument("--model-id", default="")
    upload.add_argument("--wait", action="store_true", help="wait for the build, with a progress bar")

    ops = client_parser("operations", "inspect or control operations")
    ops.add_argument("action", choices=["get", "wait", "list", "cancel", "delete"])
    ops.add_argument("name", nargs="?", default="")
    ops.add_argument("--filter", default="", help='list only: e.g. "done=false AND model=tabular"')

    explain = client_parser("explain", "explain instances")
    explain.add_argument("model", help="models/{id} or the id")
    explain.add_argument("instances", help="a JSON file with a list of instances, a JSONL file, or '-'")
    explain.add_argument("--neighbor-count", type=int, default=0)
    explain.add_argument("--crowding-count", type=int, default=0)
    explain.add_argument("--restrict", action="append", default=[],
                         help='a namespace restriction as JSON, e.g. {"namespace":"color","allow":["red"]}')
    explain.add_argument("--embeddings", action="store_true", help="instances are embeddings")
    explain.add_argument("--return-embeddings", action="store_true")

    models = client_parser("models", "list, get or delete models")
    models.add_argument("action", choices=["list", "get", "delete"])
    models.add_argument("name", nargs="?", default="")

    metadata = sub.add_parser("metadata", help="write explanation_metadata.json for a SavedModel")
    metadata.add_argument("model_path")
    metadata.add_argument("--output", default="", help="where to write (default: inside the SavedModel folder)")
    metadata.add_argument("--signature", default="serving_default")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from . import cli_commands
    return cli_commands.run(args)


def _serve(args) -> int:
    from .app import serve
    from .logging_setup import configure_logging

    settings = config.resolve(args)
    if settings.workers > 1:
        from .workers import run_workers
        return run_workers(settings)
    configure_logging(settings.log_level, json_format=settings.log_json)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
