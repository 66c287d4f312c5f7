"""The shapes of Vertex AI's documented example-based payloads, for tests that
feed them verbatim to the CLI, the SDK, the REST port and Vertex's own client.

upload_body: Vertex's "upload a model with example-based explanations" request
body (REST models:upload): lowercase preset enums, camelCase names with
snake_case metadata inside, and a serving container explaind does not run.
explain_body: Vertex's example-based request.json: a whole Explain body whose
instances carry empty restricts and crowding tags, with a snake_case override
(neighbor count, crowding count, an allow-list on the "label" namespace).
Only the locations (gs:// in the docs) and the input name differ.
"""
from __future__ import annotations

ALLOWED = ["Abyssinian", "Miniature Pinscher"]


def upload_body(artifact_uri: str = "gs://my-bucket/model",
                uris: tuple[str, ...] = ("gs://my-bucket/data/instances.jsonl",), neighbor_count: int = 10) -> dict:
    return {
        "model": {
            "displayName": "my-model",
            "artifactUri": artifact_uri,
            "containerSpec": {"imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11:latest"},
            "explanationSpec": {
                "parameters": {
                    "examples": {
                        "gcsSource": {"uris": list(uris)},
                        "neighborCount": neighbor_count,
                        "presets": {"modality": "tabular", "query": "precise"},
                    }
                },
                "metadata": {
                    "outputs": {"embedding": {"output_tensor_name": "embedding"}},
                    "inputs": {
                        "my_input": {"input_tensor_name": "features", "encoding": "IDENTITY",
                                     "modality": "tabular"},
                        "id": {"input_tensor_name": "id", "encoding": "IDENTITY"},
                    },
                    "latentSpaceSource": "embedding",
                },
            },
        }
    }


def explain_body(features: list[float]) -> dict:
    return {
        "instances": [{"id": "data_index", "features": features, "restricts": "", "crowding_tag": ""}],
        "explanation_spec_override": {
            "examples_override": {
                "neighbor_count": 5,
                "crowding_count": 2,
                "restrictions": [{"namespace_name": "label", "allow": list(ALLOWED)}],
            }
        },
    }
