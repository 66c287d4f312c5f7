"""The inputs an attribution model explains, read from its metadata against the model.

Each explained input names the tensor its attributions are taken on, its
"space": the input tensor itself (a model input or a tensor inside the graph),
or, for the gradient methods, the encoded tensor (`encodedTensorName`, such as
an embedding) when one is named. Sampled Shapley needs no gradients and always
switches the input tensor's own values.

Every refusal here happens when the model loads, which is at upload: a name the
model does not have, a tensor gradients cannot flow through, a mapping of the
wrong length, a baseline of the wrong shape. Each names its metadata field.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument
from .baselines import baseline_array, values_to_python
from .metadata import BAG_ENCODINGS

InputMetadata = explanation_pb2.ExplanationMetadata.InputMetadata


@dataclass(frozen=True)
class ExplainedInput:
    name: str                       # the metadata's key (a model input's name without metadata)
    tensor: str                     # the input tensor, canonical (a model input key or a graph tensor)
    encoded: str | None             # the encoded tensor, canonical, when named
    encoding: str                   # InputMetadata.Encoding name; ENCODING_UNSPECIFIED reads as IDENTITY
    mapping: tuple[str, ...]        # index_feature_mapping
    group: str                      # group_name, "" when none
    indices: str | None             # a sparse input's indices tensor, canonical
    dense_shape: str | None         # a sparse input's dense shape tensor, canonical
    modality: str                   # lower case; "image" answers with a picture as Vertex does
    looks_like_image: bool          # (H, W, C) or modality image: heatmaps in Attribution.images
    metadata: InputMetadata | None
    field: str                      # the metadata entry's field, for errors

    def space(self, gradients: bool) -> str:
        """The tensor the method perturbs: the encoded one for gradient methods, when named."""
        return self.encoded if gradients and self.encoded else self.tensor

    def reduces(self, gradients: bool) -> bool:
        """True when attributions are taken on an encoded tensor and summed back to the input."""
        return gradients and self.encoded is not None

    @property
    def is_bag(self) -> bool:
        return self.encoding in BAG_ENCODINGS

    @property
    def shows_picture(self) -> bool:
        return self.modality == "image"


def explained_inputs(model, metadata, method: str, field: str) -> list[ExplainedInput]:
    """The explained inputs of `model` (tf_model.SignatureModel or a test double) per
    `metadata`; without metadata inputs, every model input the method can attribute."""
    gradients = method != "sampled_shapley"
    chosen = []
    if len(metadata.inputs):
        # Sorted: a proto map's order may differ between processes, and Shapley's paths follow this order.
        for name, entry in sorted(metadata.inputs.items()):
            prefix = f"{field}.inputs[{name}]"
            chosen.append(_from_metadata(model, name, entry, prefix, gradients, method))
    else:
        for name, info in sorted(model.model_inputs.items()):
            if info.is_floating if gradients else info.is_numeric:
                looks_like_image = len(info.shape) == 3 and info.shape[-1] in (1, 3, 4)
                chosen.append(ExplainedInput(name, name, None, "IDENTITY", (), "", None, None, "numeric",
                                             looks_like_image, None, f"{field}.inputs"))
    if not chosen:
        raise InvalidArgument("the model has no input that can be attributed", field=f"{field}.inputs")
    if method == "xrai" and not any(i.looks_like_image for i in chosen):
        raise InvalidArgument("XRAI needs an image input", field=f"{field}.inputs")
    spaces: dict[str, str] = {}
    for explained in chosen:
        space = explained.space(gradients)
        if space in spaces:
            raise InvalidArgument(f"{space!r} is already explained by input {spaces[space]!r}", field=explained.field)
        spaces[space] = explained.name
    return chosen


def _from_metadata(model, name: str, entry: InputMetadata, prefix: str, gradients: bool, method: str) -> ExplainedInput:
    tensor = _resolve(model, entry.input_tensor_name or name, f"{prefix}.input_tensor_name")
    encoded = _resolve(model, entry.encoded_tensor_name, f"{prefix}.encoded_tensor_name") if entry.encoded_tensor_name \
        else None
    indices = _resolve(model, entry.indices_tensor_name, f"{prefix}.indices_tensor_name") if entry.indices_tensor_name \
        else None
    dense_shape = _resolve(model, entry.dense_shape_tensor_name, f"{prefix}.dense_shape_tensor_name") \
        if entry.dense_shape_tensor_name else None
    encoding = InputMetadata.Encoding.Name(entry.encoding)
    encoding = "IDENTITY" if encoding == "ENCODING_UNSPECIFIED" else encoding
    modality = entry.modality.lower()
    info = model.tensor_info(tensor)
    explained = ExplainedInput(name, tensor, encoded, encoding, tuple(entry.index_feature_mapping), entry.group_name,
                               indices, dense_shape, modality,
                               modality == "image" or (len(info.shape) == 3 and info.shape[-1] in (1, 3, 4)),
                               entry, prefix)
    space = model.tensor_info(explained.space(gradients))
    if gradients and not space.is_floating:
        if encoded is not None:
            raise InvalidArgument(f"the encoded tensor has dtype {space.dtype}; {method} differentiates it, so it must "
                                  "be floating-point", field=f"{prefix}.encoded_tensor_name")
        raise InvalidArgument(f"input {name!r} has dtype {info.dtype}: {method} needs a floating-point tensor to "
                              "differentiate; name its embedding (or one-hot) tensor in encoded_tensor_name",
                              field=f"{prefix}.input_tensor_name")
    if not gradients and not info.is_numeric:
        raise InvalidArgument(f"input {name!r} has dtype {info.dtype}; sampled Shapley switches numeric values",
                              field=f"{prefix}.input_tensor_name")
    if method == "xrai" and modality == "image" and encoded is not None:
        raise InvalidArgument("XRAI segments the image itself: an image input takes no encoded tensor",
                              field=f"{prefix}.encoded_tensor_name")
    _check_shapes(explained, info, space if explained.reduces(gradients) else None, prefix)
    return explained


def _resolve(model, name: str, field: str) -> str:
    try:
        return model.resolve(name)
    except LookupError as error:
        raise InvalidArgument(str(error).strip("'\""), field=field) from None


def _check_shapes(explained: ExplainedInput, info, encoded_info, prefix: str) -> None:
    """What static shapes can tell now: the mapping's length, the encoded tensor's leading axes,
    the baselines' shapes. Sizes unknown until a request comes are checked then."""
    shape = info.shape
    known = all(d is not None for d in shape)
    if explained.encoding == "CONCAT_EMBEDDING" and encoded_info is not None:
        if len(encoded_info.shape) != len(shape) + 1 or any(
                a is not None and b is not None and a != b for a, b in zip(encoded_info.shape, shape)):
            raise InvalidArgument(f"CONCAT_EMBEDDING needs an encoded tensor shaped like the input plus one embedding "
                                  f"axis: input {list(shape)}, encoded {list(encoded_info.shape)}",
                                  field=f"{prefix}.encoded_tensor_name")
    if explained.is_bag and explained.group == "" and explained.indices is None and known:
        reduced = encoded_info.shape[:-1] if encoded_info is not None else shape
        size = int(np.prod(reduced, dtype=np.int64)) if all(d is not None for d in reduced) else None
        if size is not None and size != len(explained.mapping):
            raise InvalidArgument(f"{len(explained.mapping)} names for an input of {size} values ({list(reduced)})",
                                  field=f"{prefix}.index_feature_mapping")
    entry = explained.metadata
    if known:
        for position, value in enumerate(values_to_python(entry.input_baselines)):
            baseline_array(value, shape, info.dtype, f"{prefix}.input_baselines[{position}]")
    if encoded_info is not None and all(d is not None for d in encoded_info.shape):
        for position, value in enumerate(values_to_python(entry.encoded_baselines)):
            baseline_array(value, encoded_info.shape, encoded_info.dtype, f"{prefix}.encoded_baselines[{position}]")
