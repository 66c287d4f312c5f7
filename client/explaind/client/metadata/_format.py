"""The Explainable AI SDK's `explanation_metadata.json` shape, written without TensorFlow.

Entries are plain dicts with the SDK's key names and lower-case values, and
empty (None) values dropped, exactly as the SDK's `to_dict()` does, so files
move freely between the SDK, Vertex AI and explaind.
"""
from __future__ import annotations

import enum
from typing import Any, Mapping, Sequence

METADATA_FILE = "explanation_metadata.json"
FRAMEWORK_TENSORFLOW2 = "tensorflow2"
METADATA_TAG = "explainable_ai_sdk"
MAX_BASELINES = 10


class Modality(str, enum.Enum):
    NUMERIC = "numeric"
    IMAGE = "image"
    TEXT = "text"
    CATEGORICAL = "categorical"


class Encoding(str, enum.Enum):
    IDENTITY = "identity"
    BAG_OF_FEATURES = "bag_of_features"
    BAG_OF_FEATURES_SPARSE = "bag_of_features_sparse"
    INDICATOR = "indicator"
    COMBINED_EMBEDDING = "combined_embedding"
    CONCAT_EMBEDDING = "concat_embedding"


def plain(value: Any) -> Any:
    """JSON-ready python values: numpy arrays and scalars, enums and tuples become lists / scalars."""
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "numpy"):  # a tf.Tensor given as a baseline
        return value.numpy().tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _without_none(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if value is not None}


def input_entry(
    input_tensor_name: str,
    *,
    encoding: str = Encoding.IDENTITY,
    modality: str = Modality.NUMERIC,
    input_baselines: Sequence | None = None,
    index_feature_mapping: Sequence[str] | None = None,
    encoded_tensor_name: str | None = None,
    encoded_baselines: Sequence | None = None,
    visualization: Mapping[str, Any] | None = None,
    domain: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One `inputs` entry, keys in the SDK's order."""
    if input_baselines is not None and len(input_baselines) > MAX_BASELINES:
        raise ValueError(f"at most {MAX_BASELINES} baselines per input, got {len(input_baselines)}")
    if input_baselines is not None and encoded_baselines is not None:
        raise ValueError("give input_baselines or encoded_baselines, not both")
    return _without_none({
        "visualization": plain(visualization) if visualization else None,
        "input_tensor_name": input_tensor_name,
        "encoding": plain(encoding),
        "modality": plain(modality),
        "domain": plain(domain) if domain else None,
        "input_baselines": plain(list(input_baselines)) if input_baselines is not None else None,
        "index_feature_mapping": list(index_feature_mapping) if index_feature_mapping else None,
        "encoded_tensor_name": encoded_tensor_name,
        "encoded_baselines": plain(list(encoded_baselines)) if encoded_baselines is not None else None,
    })


def output_entry(output_tensor_name: str, index_name_mapping: Sequence[str] | None = None) -> dict[str, Any]:
    return _without_none({"output_tensor_name": output_tensor_name,
                          "index_name_mapping": list(index_name_mapping) if index_name_mapping else None})


def metadata_document(inputs: Mapping[str, dict], outputs: Mapping[str, dict],
                      framework: str = FRAMEWORK_TENSORFLOW2) -> dict[str, Any]:
    return {"outputs": dict(outputs), "inputs": dict(inputs), "framework": framework, "tags": [METADATA_TAG]}
