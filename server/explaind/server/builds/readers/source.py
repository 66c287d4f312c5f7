"""Where an upload's examples come from: `gcs_source` or `example_gcs_source`.

`example_gcs_source.data_format = JSONL` (as in Vertex AI) says every file is
JSONL whatever its name, so files without a known extension (and those in a
folder) are read as JSONL. Otherwise files are typed by their extension.
"""
from __future__ import annotations

import dataclasses

from explaind.v1 import explanation_pb2

DataFormat = explanation_pb2.Examples.ExampleGcsSource.DataFormat


@dataclasses.dataclass(frozen=True)
class DataSource:
    uris: list[str]
    field: str                     # the request path of the uris, for errors
    default_format: str | None     # the format of files whose extension says none


def data_source(examples: explanation_pb2.Examples, prefix: str) -> DataSource:
    if examples.HasField("example_gcs_source"):
        source = examples.example_gcs_source
        default = "jsonl" if source.data_format == DataFormat.JSONL else None
        return DataSource(list(source.gcs_source.uris), f"{prefix}.example_gcs_source.gcs_source.uris", default)
    return DataSource(list(examples.gcs_source.uris), f"{prefix}.gcs_source.uris", None)
