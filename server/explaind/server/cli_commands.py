"""Client-side subcommands of `explaind`; they use only the client SDK."""
from __future__ import annotations

import json
import sys

import grpc
from google.protobuf import json_format

from explaind.client import Client, OperationError, upload_metadata
from explaind.v1 import model_service_pb2


def run(args) -> int:
    if args.command == "metadata":
        return _metadata(args)
    try:
        with Client(args.target) as client:
            return COMMANDS[args.command](client, args)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except OperationError as e:
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


def _upload(client: Client, args) -> int:
    payload = _read_json(args.model)
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        payload = payload["model"]      # a whole UploadModel request body
    op = client.upload_model(payload, model_id=args.model_id)
    print(op.name, flush=True)
    if not args.wait:
        return 0
    model = client.wait(op, on_progress=_progress_bar)
    print(file=sys.stderr)
    _print(model)
    return 0


def _progress_bar(meta: model_service_pb2.UploadModelOperationMetadata) -> None:
    width = 30
    filled = int(width * meta.progress_percent / 100)
    stage = model_service_pb2.UploadModelOperationMetadata.Stage.Name(meta.stage)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {meta.progress_percent:5.1f}% "
                     f"{meta.examples_embedded}/{meta.examples_total} {stage:<16}")
    sys.stderr.flush()


def _operations(client: Client, args) -> int:
    if args.action == "list":
        for op in client.list_operations(filter=args.filter):
            meta = upload_metadata(op)
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
        client.wait(name, on_progress=_progress_bar)
    except OperationError:
        pass
    print(file=sys.stderr)
    return client.get_operation(name)


def _explain(client: Client, args) -> int:
    instances = _read_json(args.instances)
    if isinstance(instances, dict):
        instances = instances.get("instances", [instances])
    restrictions = [json.loads(r) for r in args.restrict]
    response = client.explain(args.model, instances, neighbor_count=args.neighbor_count,
                              crowding_count=args.crowding_count, restrictions=restrictions,
                              return_embeddings=args.return_embeddings, embeddings=args.embeddings)
    _print(response)
    return 0


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
        _print(client.get_model(args.name))
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


COMMANDS = {"upload": _upload, "operations": _operations, "explain": _explain, "models": _models}
