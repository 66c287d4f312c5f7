"""The explanation methods, read from ExplanationParameters in one place.

Every part that depends on the method (the upload's build recipe, the
servable a published model becomes, the attribution settings) asks
`method_of`, so a new method is added here and in those factories only.
"""
from __future__ import annotations

import enum


class Method(str, enum.Enum):
    EXAMPLES = "examples"
    INTEGRATED_GRADIENTS = "integrated_gradients"
    SAMPLED_SHAPLEY = "sampled_shapley"
    XRAI = "xrai"

    @property
    def is_attribution(self) -> bool:
        return self is not Method.EXAMPLES


# ExplanationParameters' `method` oneof field -> the method it selects.
FIELDS = {
    "examples": Method.EXAMPLES,
    "integrated_gradients_attribution": Method.INTEGRATED_GRADIENTS,
    "sampled_shapley_attribution": Method.SAMPLED_SHAPLEY,
    "xrai_attribution": Method.XRAI,
}


def method_field(parameters) -> str | None:
    """The set field of the `method` oneof (examples included), or None."""
    return parameters.WhichOneof("method") if parameters is not None else None


def method_of(parameters) -> Method | None:
    """The method an ExplanationParameters selects, or None when it selects none."""
    return FIELDS.get(method_field(parameters))


def latent_source(metadata) -> str:
    """Where an example-based model's embedding is: `latent_space_source`, else, as
    Vertex reads its notebooks' metadata, the output the metadata's one `outputs`
    entry names (its output_tensor_name, else its key); "" when neither says."""
    if metadata.latent_space_source:
        return metadata.latent_space_source
    if len(metadata.outputs) == 1:
        key, output = next(iter(metadata.outputs.items()))
        return output.output_tensor_name or key
    return ""
