"""Test double for google-cloud-storage's Client in the test process: the buckets are folders
under one root (the daemons' $EXPLAIND_TEST_GCS_ROOT), as tests/local_gcs/sitecustomize.py
gives the daemons. Only what the SDK's BatchPredictionJob.iter_outputs calls: list_blobs, whose
answer carries its bucket as google-cloud-storage's iterator does."""
from __future__ import annotations

import os
import types


class LocalStorageClient:
    root = ""                     # set by the test: the folder that holds the buckets

    def __init__(self, project=None, credentials=None, **kwargs):
        pass

    def list_blobs(self, bucket_or_name, prefix: str | None = None, **kwargs):
        name = getattr(bucket_or_name, "name", bucket_or_name)
        bucket = types.SimpleNamespace(name=name)
        folder = os.path.join(self.root, name)
        keys = sorted(os.path.relpath(os.path.join(where, f), folder)
                      for where, _, files in os.walk(folder) for f in files)
        return Blobs([types.SimpleNamespace(name=k, bucket=bucket) for k in keys if k.startswith(prefix or "")],
                     bucket)


class Blobs(list):
    def __init__(self, blobs, bucket):
        super().__init__(blobs)
        self.bucket = bucket
