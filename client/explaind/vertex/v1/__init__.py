"""Stubs generated from proto/explaind/vertex/v1 by tools/gen_protos.py. Do not edit."""
