#!/usr/bin/env bash
# Downloads, on this (networked) machine, the Python wheels that the lent GPU
# machine lacks for running explaind without TensorFlow (index-only serving):
# cp312 manylinux x86-64 builds into .whl/, which `git` ignores. bench/gpu_check.sh
# installs them there. Pinned to what the committed stubs need (grpcio-tools'
# version in pyproject.toml) and what this project's venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
# grpcio 1.85.x: the generated stubs refuse an older runtime. protobuf: the stubs
# were made by protoc 7.35; googleapis-common-protos and the health/reflection
# services are pure Python.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  "grpcio==1.85.1" "grpcio-health-checking==1.85.1" "grpcio-reflection==1.85.1" \
  "googleapis-common-protos==1.76.0" "protobuf==7.36.2"
ls -la .whl
du -sh .whl
