"""Test double for Cloud Storage in a daemon started by the tests: `gs://bucket/path`
reads the local folder $EXPLAIND_TEST_GCS_ROOT/bucket/path.

google-cloud-aiplatform's Model.upload sends a gs:// artifact_uri as it is and
would copy any other to a real bucket first, so the SDK tests name gs:// URIs;
a daemon with `explaind[gcs]` reads them with gcsfs. Here, with no network, the
daemon's fsspec reads them from a folder instead (put on PYTHONPATH, this file
is imported at the interpreter's start).
"""
import os

if os.environ.get("EXPLAIND_TEST_GCS_ROOT"):
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    class LocalFolderGCS(DirFileSystem):
        protocol = "gs"

        def __init__(self, *args, **kwargs):
            # auto_mkdir: as in a bucket, a file can be written under a "folder" nobody made.
            super().__init__(path=os.environ["EXPLAIND_TEST_GCS_ROOT"], fs=LocalFileSystem(auto_mkdir=True))

        @classmethod
        def _strip_protocol(cls, path):
            path = path[len("gs://"):] if path.startswith("gs://") else path
            return path.rstrip("/")

        def get(self, rpath, lpath, recursive=False, **kwargs):
            # DirFileSystem drops a trailing "/", which (as gcsfs reads it) copies a folder's contents.
            full = os.path.join(self.path, rpath.rstrip("/")) + ("/" if rpath.endswith("/") else "")
            return self.fs.get(full, lpath, recursive=recursive, **kwargs)

    fsspec.register_implementation("gs", LocalFolderGCS, clobber=True)
