"""Generates the Python stubs in client/explaind/ from proto/explaind/: explaind.v1
and the Vertex AI compatible messages (explaind.vertex.v1, explaind.vertex.v1beta1).

Usage: python tools/gen_protos.py [--out DIR]
The stubs are committed; tests/unit/test_protos_in_sync.py regenerates them into
a temporary folder and fails when they differ from the committed ones.
"""
import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
# Every folder of .proto files under proto/, one generated Python package each.
PACKAGES = ("explaind/v1", "explaind/vertex/v1", "explaind/vertex/v1beta1")


def include_paths(staging: pathlib.Path):
    """Proto roots: ours, protobuf's well-known types, googleapis-common-protos.

    googleapis-common-protos ships the Operations API as
    google/longrunning/operations_proto.proto but registers it at run time as
    google/longrunning/operations.proto (its canonical name). We import the
    canonical name, so the file is staged under it; importing the shipped name
    would fail at run time with "Depends on file ... has not been loaded".
    """
    import grpc_tools
    import google.longrunning

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    longrunning = pathlib.Path(google.longrunning.__path__[0])
    googleapis = longrunning.parent.parent
    staged = staging / "google" / "longrunning"
    staged.mkdir(parents=True)
    shutil.copy(longrunning / "operations_proto.proto", staged / "operations.proto")
    return [PROTO_ROOT, well_known, staging, googleapis]


def generate(out_dir: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "explaind").rglob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        # protoc runs in its own process: loaded into a process that already holds
        # TensorFlow's copy of protobuf, grpc_tools' compiler can crash.
        args = [sys.executable, "-m", "grpc_tools.protoc"]
        args += [f"-I{p}" for p in include_paths(pathlib.Path(staging))]
        args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
        args += protos
        result = subprocess.run(args, cwd=PROTO_ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"protoc failed: {result.stderr}")
    for package in PACKAGES:
        folder = out_dir.joinpath(*package.split("/"))
        source = "proto/" + package
        (folder / "__init__.py").write_text(f'"""Stubs generated from {source} by tools/gen_protos.py. Do not edit."""\n')
    # explaind.vertex holds only the generated packages.
    (out_dir / "explaind" / "vertex" / "__init__.py").write_text(
        '"""Vertex AI compatible messages (generated subpackages v1, v1beta1)."""\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "client"))
    args = parser.parse_args(argv)
    generate(pathlib.Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
