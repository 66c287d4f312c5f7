"""The `explaind` command: `serve` starts the daemon; every other subcommand
(upload, update, operations, explain, batch, models, metadata) is a client of it
and uses only the client SDK."""
from __future__ import annotations

import argparse
import json
import os
import sys

import grpc
from google.protobuf import json_format

from explaind.client import Client, OperationError, PayloadError, batch_metadata, upload_metadata
from explaind.client.client import operation_result
from explaind.v1 import batch_service_pb2, model_service_pb2


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter is not for users; EXPLAIND logs say what matters.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    if args.command == "serve":
        from explaind.server.main import serve_command
        return serve_command(args)
    return run(args)


def parser() -> argparse.ArgumentParser:
    from explaind.server import config      # the settings' flags (standard library only)

    root = argparse.ArgumentParser(prog="explaind", description="gRPC daemon for ML explanations")
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    config.add_arguments(serve)

    def client_parser(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target", default="localhost:8500", help="daemon address (host:port)")
        add_connection_arguments(p)
        return p

    upload = client_parser("upload", "upload a model (starts a build operation)")
    upload.add_argument("model", help="a JSON file ('-' for stdin): the Model, or a whole UploadModel "
                                      "request body; Vertex AI's documented payloads parse unchanged")
    upload.add_argument("--model-id", default="", help="the model id (replaces the body's modelId)")
    upload.add_argument("--wait", action="store_true", help="wait for the build, with a progress bar")

    update = client_parser("update", "add examples to a model, remove them by id, or retrain its index")
    update.add_argument("model", help="models/{id} or the id")
    update.add_argument("--request", default="", help="a JSON file ('-' for stdin): the UpdateExplanationDataset "
                                                      "request body or its Examples; Vertex AI's documented "
                                                      "payloads parse unchanged (the flags below replace its values)")
    update.add_argument("--add", nargs="*", default=[], help="data set files (any upload format; globs)")
    update.add_argument("--jsonl", action="store_true", help="the added files are JSONL whatever their names")
    update.add_argument("--remove", nargs="*", default=None, help="ids of examples to remove")
    update.add_argument("--retrain", action="store_true", help="train a compressed index's codebooks again")
    update.add_argument("--wait", action="store_true", help="wait for the update, with a progress bar")

    ops = client_parser("operations", "inspect or control operations")
    ops.add_argument("action", choices=["get", "wait", "list", "cancel", "delete"])
    ops.add_argument("name", nargs="?", default="")
    ops.add_argument("--filter", default="", help='list only: e.g. "done=false AND model=tabular"')

    explain = client_parser("explain", "explain instances")
    explain.add_argument("model", help="models/{id} or the id")
    explain.add_argument("instances", help="a JSON file ('-' for stdin): a list of instances, a JSONL file, or "
                                           "a whole Explain request body ({\"instances\": [...], "
                                           "\"explanation_spec_override\": {...}}); the flags below replace "
                                           "the body's values")
    explain.add_argument("--neighbor-count", type=int, default=0)
    explain.add_argument("--crowding-count", type=int, default=0)
    explain.add_argument("--restrict", action="append", default=None,
                         help='a namespace restriction as JSON, e.g. {"namespace":"color","allow":["red"]}; '
                              "repeat for several (they replace the body's restrictions)")
    explain.add_argument("--embeddings", action="store_true", help="instances are embeddings")
    explain.add_argument("--return-embeddings", action="store_true")

    batch = client_parser("batch", "explain every row of a data set into files (a batch job, as Vertex AI's "
                                   "batch prediction with explanations)")
    batch.add_argument("model", help="models/{id} or the id")
    batch.add_argument("inputs", nargs="+", help="data files, globs or folders the daemon reads (any URI an "
                                                 "upload takes, under its --allowed-uri-prefix)")
    batch.add_argument("--output", required=True, help="output prefix: the job writes a new folder under it")
    batch.add_argument("--format", default="jsonl", choices=["jsonl", "csv", "tf-record", "tf-record-gzip",
                                                              "file-list"], help="the inputs' format")
    batch.add_argument("--override", default="", help="a JSON file ('-' for stdin): the ExplanationSpecOverride "
                                                      "every row gets, as an Explain call's")
    batch.add_argument("--neighbor-count", type=int, default=0)
    batch.add_argument("--predictions-only", action="store_true", help="predictions, no explanations")
    batch.add_argument("--max-failed-fraction", type=float, default=0.0,
                       help="fail the job once more than this fraction of rows failed (default: the daemon's)")
    batch.add_argument("--batch-size", type=int, default=0, help="rows per model run (default: the daemon's)")
    batch.add_argument("--display-name", default="")
    batch.add_argument("--wait", action="store_true", help="wait for the job, with a progress bar")

    models = client_parser("models", "list, get or delete models")
    models.add_argument("action", choices=["list", "get", "delete"])
    models.add_argument("name", nargs="?", default="")

    quickstart = sub.add_parser("quickstart", help="train a small Keras model, upload it to a daemon (started "
                                                   "here unless --target), explain and predict")
    quickstart.add_argument("--target", default="", help="use this daemon (host:port) instead of starting one")
    quickstart.add_argument("--dir", default="", help="work folder (default: a new temporary folder, kept)")

    metadata = sub.add_parser("metadata", help="write explanation_metadata.json for a SavedModel")
    metadata.add_argument("model_path")
    metadata.add_argument("--output", default="", help="where to write (default: inside the SavedModel folder)")
    metadata.add_argument("--signature", default="serving_default")
    return root


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    """TLS and credentials of a client command (docs/security.md)."""
    p.add_argument("--tls", action="store_true", help="TLS, the server checked against the system's root CAs")
    p.add_argument("--tls-ca-file", default="", help="TLS, the server checked against this CA (PEM)")
    p.add_argument("--tls-cert-file", default="", help="client certificate for mutual TLS (PEM)")
    p.add_argument("--tls-key-file", default="", help="the client certificate's key (PEM)")
    p.add_argument("--tls-server-name", default="", help="the name to expect in the server's certificate")
    p.add_argument("--token-file", default="", help="a file holding the bearer token (else $EXPLAIND_TOKEN)")


def connection_options(args) -> dict:
    return dict(tls=args.tls or None, tls_ca_file=args.tls_ca_file, tls_cert_file=args.tls_cert_file,
                tls_key_file=args.tls_key_file, tls_server_name=args.tls_server_name,
                token_file=args.token_file, token=None if args.token_file else os.environ.get("EXPLAIND_TOKEN"))


def run(args) -> int:
    if args.command == "metadata":
        return _metadata(args)
    if args.command == "quickstart":
        from explaind.client import quickstart
        return quickstart.run(args.target, args.dir)
    try:
        client = Client(args.target, **connection_options(args))
    except (OSError, ValueError) as e:      # an unreadable certificate or token file
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with client:
            return COMMANDS[args.command](client, args)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except OperationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except PayloadError as e:
        print(f"error: INVALID_ARGUMENT: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:       # an unreadable file, JSON that does not parse
        print(f"error: {e}", file=sys.stderr)
        return 1


def _read_json(path: str):
    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _print(message) -> None:
    print(json_format.MessageToJson(message, indent=2))


def _recall_line(model) -> str | None:
    """The index's measured recall (and what its build picked) in one line; None when not measured."""
    info = model.index_info
    if not info.HasField("recall"):
        return None
    r = info.recall
    line = (f"recall@{r.neighbor_count} {r.recall:.3f}" + (f" on {r.queries} held-out examples" if r.queries
                                                              else " (exact index)") + f", floor {r.floor:g}")
    if info.HasField("tuning"):
        t = info.tuning
        line += f"; picked: {t.code_shape} codes, {t.leaves_searched} of {info.nlist} leaves, {t.candidates} candidates"
    return line


def _print_warnings(op) -> None:
    for warning in upload_metadata(op).warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _upload(client: Client, args) -> int:
    op = client.upload_model(_read_json(args.model), model_id=args.model_id)
    print(op.name, flush=True)
    if not args.wait:
        return 0
    model = client.wait(op, on_progress=_progress_bar)
    print(file=sys.stderr)
    _print_warnings(client.get_operation(op.name))
    _print(model)
    return 0


def _draw_bar(percent: float, tail: str) -> None:
    """Redraws one line on stderr: a 30-wide bar, the percent, then `tail`."""
    width = 30
    filled = int(width * percent / 100)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}% {tail}")
    sys.stderr.flush()


def _progress_bar(meta: model_service_pb2.UploadModelOperationMetadata) -> None:
    stage = model_service_pb2.UploadModelOperationMetadata.Stage.Name(meta.stage)
    _draw_bar(meta.progress_percent, f"{meta.examples_embedded}/{meta.examples_total} {stage:<16}")


def _operations(client: Client, args) -> int:
    if args.action == "list":
        for op in client.list_operations(filter=args.filter):
            meta = batch_metadata(op) if _is_batch(op) else upload_metadata(op)
            state = "ERROR" if op.HasField("error") else ("DONE" if op.done else "RUNNING")
            print(f"{op.name}\t{meta.model}\t{state}\t{meta.progress_percent:.0f}%")
        return 0
    if not args.name:
        print("error: give the operation name", file=sys.stderr)
        return 2
    if args.action == "get":
        _print(client.get_operation(args.name))
    elif args.action == "wait":
        _print(_wait_done(client, args.name))
    elif args.action == "cancel":
        client.cancel_operation(args.name)
    elif args.action == "delete":
        client.delete_operation(args.name)
    return 0


def _wait_done(client: Client, name: str):
    try:
        if _is_batch(client.get_operation(name)):
            client.wait_batch(name, on_progress=_rows_bar)
        else:
            client.wait(name, on_progress=_progress_bar)
    except OperationError:
        pass
    print(file=sys.stderr)
    return client.get_operation(name)


def _explain(client: Client, args) -> int:
    payload = _read_json(args.instances)
    if isinstance(payload, dict) and "instances" not in payload:
        payload = [payload]                 # one instance
    restrictions = None if args.restrict is None else [json.loads(r) for r in args.restrict]
    response = client.explain(args.model, payload, neighbor_count=args.neighbor_count,
                              crowding_count=args.crowding_count, restrictions=restrictions,
                              return_embeddings=args.return_embeddings, embeddings=args.embeddings)
    _print(response)
    return 0


def _batch(client: Client, args) -> int:
    override = _read_json(args.override) if args.override else None
    if args.neighbor_count:
        override = dict(override or {})
        examples = dict(override.get("examples_override", override.pop("examplesOverride", {})))
        examples["neighbor_count"] = args.neighbor_count
        override["examples_override"] = examples
    op = client.batch_explain(args.model, args.inputs, args.output, instances_format=args.format, override=override,
                              display_name=args.display_name, predictions_only=args.predictions_only,
                              max_failed_fraction=args.max_failed_fraction, batch_size=args.batch_size)
    print(op.name, flush=True)
    if not args.wait:
        return 0
    try:
        response = client.wait_batch(op, on_progress=_rows_bar)
    finally:
        print(file=sys.stderr)
    _print(response)
    return 0


def _is_batch(op) -> bool:
    return op.metadata.Is(batch_service_pb2.BatchExplainOperationMetadata.DESCRIPTOR)


def _rows_bar(meta: batch_service_pb2.BatchExplainOperationMetadata) -> None:
    state = batch_service_pb2.JobState.Name(meta.state).removeprefix("JOB_STATE_")
    failed = f" ({meta.rows_failed} failed)" if meta.rows_failed else ""
    _draw_bar(meta.progress_percent,
              f"{meta.rows_succeeded + meta.rows_failed}/{meta.rows_total} rows{failed} {state:<10}")


def _models(client: Client, args) -> int:
    if args.action == "list":
        for model in client.list_models():
            state = model.State.Name(model.state)
            print(f"{model.name}\t{state}\t{model.index_info.example_count}\t{model.display_name}")
        return 0
    if not args.name:
        print("error: give the model name", file=sys.stderr)
        return 2
    if args.action == "get":
        model = client.get_model(args.name)
        line = _recall_line(model)
        if line:
            print(line, file=sys.stderr)
        _print(model)
    else:
        client.delete_model(args.name)
    return 0


def _metadata(args) -> int:
    from explaind.client.metadata import SavedModelMetadataBuilder

    builder = SavedModelMetadataBuilder(args.model_path, signature_name=args.signature)
    path = args.output or None
    written = builder.save_metadata(path or args.model_path)
    print(written or path or args.model_path)
    return 0


def _update(client: Client, args) -> int:
    op = client.update_explanation_dataset(args.model, uris=args.add, remove_ids=args.remove, retrain=args.retrain,
                                           jsonl=args.jsonl, request=_read_json(args.request) if args.request else None)
    print(op.name, flush=True)
    if not args.wait:
        return 0
    client.wait(op, on_progress=_progress_bar)
    print(file=sys.stderr)
    done = client.get_operation(op.name)
    _print_warnings(done)
    _print(operation_result(done))
    return 0


COMMANDS = {"upload": _upload, "update": _update, "operations": _operations, "explain": _explain, "models": _models,
            "batch": _batch}


if __name__ == "__main__":
    sys.exit(main())
