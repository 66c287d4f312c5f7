"""Stubs generated from proto/explaind/v1 by tools/gen_protos.py. Do not edit."""
