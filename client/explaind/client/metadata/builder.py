"""Metadata builders: infer inputs and outputs from a model's serving signature, let the user
describe them (numeric, categorical, image, text), write `explanation_metadata.json`.

Method names and arguments follow the Explainable AI SDK's TF2 builder.
TensorFlow is imported only when a builder is created.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Mapping, Sequence

from . import _format
from ._format import Encoding, Modality


class _MetadataBuilder:
    """Shared editing and writing over {name: input entry} and {name: output entry}."""

    def __init__(self) -> None:
        self._inputs: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, dict[str, Any]] = {}

    def _infer_from_signature(self, signature, outputs_to_explain: Sequence[str]) -> None:
        if outputs_to_explain and len(outputs_to_explain) > 1:
            raise ValueError(f'"outputs_to_explain" can only contain 1 element, got {len(outputs_to_explain)}')
        _, input_specs = signature.structured_input_signature
        for name, spec in input_specs.items():
            modality = Modality.NUMERIC if spec.dtype.is_floating else Modality.CATEGORICAL
            self._inputs[name] = _format.input_entry(name, modality=modality)
        output_names = list(signature.structured_outputs)
        if not outputs_to_explain and len(output_names) > 1:
            raise ValueError("the signature has several outputs; name the one to explain in outputs_to_explain")
        wanted = outputs_to_explain[0] if outputs_to_explain else output_names[0]
        if wanted not in output_names:
            raise ValueError(f"output {wanted!r} is not in the signature's outputs {output_names}")
        self._outputs[wanted] = _format.output_entry(wanted)

    def _take(self, input_name: str, new_name: str | None) -> tuple[str, str]:
        if input_name not in self._inputs:
            raise ValueError(f"input {input_name!r} does not exist")
        tensor_name = self._inputs.pop(input_name)["input_tensor_name"]
        return (new_name or input_name), tensor_name

    def set_numeric_metadata(self, input_name: str, new_name: str | None = None,
                             input_baselines: Sequence | None = None,
                             index_feature_mapping: Sequence[str] | None = None) -> None:
        """Numeric input; with index_feature_mapping it is a bag of named features."""
        name, tensor = self._take(input_name, new_name)
        encoding = Encoding.BAG_OF_FEATURES if index_feature_mapping else Encoding.IDENTITY
        self._inputs[name] = _format.input_entry(tensor, encoding=encoding, input_baselines=input_baselines,
                                                 index_feature_mapping=index_feature_mapping)

    def set_categorical_metadata(self, input_name: str, new_name: str | None = None,
                                 encoded_name: str | None = None, encoding: str = Encoding.IDENTITY,
                                 input_baselines: Sequence | None = None,
                                 encoded_baselines: Sequence | None = None) -> None:
        name, tensor = self._take(input_name, new_name)
        self._inputs[name] = _format.input_entry(tensor, encoding=encoding, modality=Modality.CATEGORICAL,
                                                 input_baselines=input_baselines, encoded_tensor_name=encoded_name,
                                                 encoded_baselines=encoded_baselines)

    def set_image_metadata(self, input_name: str, new_name: str | None = None,
                           input_baselines: Sequence | None = None,
                           visualization: Mapping[str, Any] | Any | None = None,
                           domain: Mapping[str, float] | Any | None = None) -> None:
        """Image input. visualization: a dict of SDK keys (type, polarity, color_map,
        clip_above_percentile, clip_below_percentile, overlay_type...) or an object with asdict();
        domain: {"min", "max"[, "original_mean", "original_stddev"]} or an object with asdict()."""
        name, tensor = self._take(input_name, new_name)
        if visualization is not None and hasattr(visualization, "asdict"):
            visualization = visualization.asdict()
        if domain is not None and hasattr(domain, "asdict"):
            domain = domain.asdict()
        self._inputs[name] = _format.input_entry(tensor, modality=Modality.IMAGE, input_baselines=input_baselines,
                                                 visualization=visualization, domain=domain)

    def set_text_metadata(self, input_name: str, new_name: str | None = None,
                          encoded_name: str | None = None, encoding: str = Encoding.IDENTITY,
                          input_baselines: Sequence | None = None,
                          encoded_baselines: Sequence | None = None) -> None:
        """Text input (tokens); attributions go to encoded_name (e.g. the embedding) when given."""
        name, tensor = self._take(input_name, new_name)
        self._inputs[name] = _format.input_entry(tensor, encoding=encoding, modality=Modality.TEXT,
                                                 input_baselines=input_baselines, encoded_tensor_name=encoded_name,
                                                 encoded_baselines=encoded_baselines)

    def set_output_metadata(self, output_name: str, new_name: str,
                            index_name_mapping: Sequence[str] | None = None) -> None:
        """Renames an output (its tensor name stays); optional class names per output index."""
        if output_name not in self._outputs:
            raise ValueError(f"output {output_name!r} does not exist")
        tensor = self._outputs.pop(output_name)["output_tensor_name"]
        self._outputs[new_name] = _format.output_entry(tensor, index_name_mapping)

    def remove_input_metadata(self, name: str) -> None:
        if name not in self._inputs:
            raise ValueError(f"input {name!r} does not exist")
        del self._inputs[name]

    def remove_output_metadata(self, name: str) -> None:
        if name not in self._outputs:
            raise ValueError(f"output {name!r} does not exist")
        del self._outputs[name]

    def get_metadata(self) -> dict[str, Any]:
        """The metadata as the SDK's dict: outputs, inputs, framework, tags."""
        return json.loads(json.dumps(_format.metadata_document(self._inputs, self._outputs)))

    def save_metadata(self, file_path: str) -> str:
        """Writes explanation_metadata.json into the folder file_path (local or fsspec URL); returns its path."""
        if len(self._outputs) != 1:
            raise ValueError(f"the metadata needs exactly one output, has {len(self._outputs)}")
        path = file_path.rstrip("/") + "/" + _format.METADATA_FILE
        text = json.dumps(self.get_metadata(), indent=2)
        if "://" in file_path:
            import fsspec

            with fsspec.open(path, "w") as handle:
                handle.write(text)
        else:
            os.makedirs(file_path, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        return path


class SavedModelMetadataBuilder(_MetadataBuilder):
    """Metadata for a TF2 SavedModel: every signature input, and the one output to explain."""

    def __init__(self, model_path: str, signature_name: str = "serving_default",
                 outputs_to_explain: Sequence[str] = (), **save_kwargs) -> None:
        import tensorflow as tf

        super().__init__()
        self._tf = tf
        self._save_kwargs = save_kwargs
        self._loaded = tf.saved_model.load(model_path)
        if signature_name not in self._loaded.signatures:
            raise ValueError(f"the SavedModel has no signature {signature_name!r}")
        self._infer_from_signature(self._loaded.signatures[signature_name], tuple(outputs_to_explain))

    def save_model_with_metadata(self, file_path: str) -> str:
        """Saves the model (all its signatures) and the metadata beside it; returns file_path."""
        kwargs = dict(self._save_kwargs)
        signatures = kwargs.pop("signatures", self._loaded.signatures)
        self._tf.saved_model.save(self._loaded, file_path, signatures=signatures, **kwargs)
        self.save_metadata(file_path)
        return file_path


class KerasModelMetadataBuilder(SavedModelMetadataBuilder):
    """Metadata for an in-memory Keras model, as it will be served once exported.

    The model is exported (Keras `model.export`) to a scratch folder first, so
    the names in the metadata are exactly the exported signature's.
    """

    def __init__(self, model, outputs_to_explain: Sequence[str] = (), signature_name: str = "serving_default") -> None:
        self._model = model
        self._scratch = tempfile.mkdtemp(prefix="explaind-keras-export-")
        export_dir = os.path.join(self._scratch, "model")
        model.export(export_dir, verbose=False)
        super().__init__(export_dir, signature_name=signature_name, outputs_to_explain=outputs_to_explain)
        self._export_dir = export_dir

    def save_model_with_metadata(self, file_path: str) -> str:
        """Exports the model to file_path and writes the metadata beside it; returns file_path."""
        if "://" in file_path:
            self._model.export(file_path, verbose=False)
        else:
            shutil.copytree(self._export_dir, file_path, dirs_exist_ok=True)
        self.save_metadata(file_path)
        return file_path

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)
