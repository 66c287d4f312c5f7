"""FeatureExplainer: the server's entry point for feature attributions of one model.

It ties a model (predict and gradient callables), the explanation spec and the
metadata to the attribution functions, and turns results into Attribution
messages. Everything numeric lives in the sibling modules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from explaind.client.values import to_value
from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument
from ..methods import method_of
from . import parameters as params
from .approximation import approximation_error, approximation_warning
from .baselines import build_baselines, values_to_python
from .blur import blurred_baseline
from .integrated_gradients import PathJob, baseline_pairs, path_integrals
from .metadata import DEFAULT_FIELD, load_metadata_for_model, signature_name_of, validate_metadata
from .model_fn import predict_in_chunks
from .selection import select_outputs
from .shapley import sampled_shapley
from .smoothgrad import noisy_pairs
from .visualization import attribution_png, settings_for
from .xrai import segment_masks, xrai

OVERRIDE_METADATA_FIELD = "explanation_spec_override.metadata"
# Rows per gradient call: all steps of a path always share one call; beyond that,
# bound the batch to about this many input elements to cap memory.
MAX_BATCH_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class ExplainedInput:
    name: str            # the metadata's name: the key in feature_attributions and images
    signature_name: str  # the signature input it reads
    is_image: bool
    metadata: "explanation_pb2.ExplanationMetadata.InputMetadata | None"


class FeatureExplainer:
    def __init__(self, model, spec: explanation_pb2.ExplanationSpec,
                 metadata: explanation_pb2.ExplanationMetadata | None = None,
                 metadata_field: str = DEFAULT_FIELD):
        """`model` has predict(inputs) -> (batch, n), gradients(inputs, index) -> dict,
        `inputs` (name -> TensorInfo), `outputs` (name -> per-instance shape) and `output_name`."""
        self.method = self.method_of(spec)
        if self.method is None:
            raise InvalidArgument("the explanation spec has no feature attribution method", field=params.SPEC_FIELD)
        self._spec = spec
        self._settings = params.resolve(spec.parameters)  # validates the model's own ranges once
        self._metadata = metadata or explanation_pb2.ExplanationMetadata()
        validate_metadata(self._metadata, model.inputs, model.outputs, field=metadata_field, method=self.method)
        self._model = model
        self.output_name, self._output_label = self._choose_output(model, metadata_field)
        model.output_name = self.output_name
        self.inputs = self._explained_inputs(model, metadata_field)

    @property
    def model(self):
        """The model callables (predict, gradients) this explainer runs."""
        return self._model

    # ----- construction -------------------------------------------------------------

    @classmethod
    def load(cls, artifact_uri: str, spec: explanation_pb2.ExplanationSpec,
             signature_name: str = "serving_default") -> "FeatureExplainer":
        """Loads the SavedModel and metadata (the spec's, else explanation_metadata.json beside the model)."""
        import tensorflow as tf

        from .tf_model import SignatureModel

        if cls.method_of(spec) is None:
            raise InvalidArgument("the explanation spec has no feature attribution method", field=params.SPEC_FIELD)
        try:
            model = SignatureModel.load(artifact_uri, signature_name)
        except KeyError:
            raise InvalidArgument(f"the SavedModel has no signature {signature_name!r}", field="model.artifact_uri") from None
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise InvalidArgument(f"cannot load a SavedModel from {artifact_uri!r}: {error}", field="model.artifact_uri") from None
        if spec.HasField("metadata") and (len(spec.metadata.inputs) or len(spec.metadata.outputs)):
            return cls(model, spec, spec.metadata, DEFAULT_FIELD)
        return cls(model, spec, load_metadata_for_model(artifact_uri), "model.artifact_uri (explanation_metadata.json)")

    @staticmethod
    def method_of(spec) -> str | None:
        """'integrated_gradients' | 'sampled_shapley' | 'xrai', or None (examples, or no method)."""
        method = method_of(spec.parameters) if spec is not None and spec.HasField("parameters") else None
        return method.value if method is not None and method.is_attribution else None

    def _choose_output(self, model, field: str) -> tuple[str, str]:
        for label, entry in self._metadata.outputs.items():
            return signature_name_of(entry.output_tensor_name or label, model.outputs), label
        if len(model.outputs) != 1:
            raise InvalidArgument(f"the signature has outputs {sorted(model.outputs)}; name the one to explain in the metadata",
                                  field=f"{field}.outputs")
        name = next(iter(model.outputs))
        return name, name

    def _explained_inputs(self, model, field: str) -> list[ExplainedInput]:
        needs_gradients = self.method != params.SAMPLED_SHAPLEY
        chosen = []
        if len(self._metadata.inputs):
            for name, entry in self._metadata.inputs.items():
                signature_name = signature_name_of(entry.input_tensor_name or name, model.inputs)
                info = model.inputs[signature_name]
                if not self._explainable(info, needs_gradients):
                    raise InvalidArgument(
                        f"input {name!r} has dtype {info.dtype}; {self.method} needs "
                        f"{'floating-point' if needs_gradients else 'numeric'} inputs",
                        field=f"{field}.inputs[{name}].input_tensor_name")
                chosen.append(ExplainedInput(name, signature_name, entry.modality.lower() == "image", entry))
        else:
            for name, info in model.inputs.items():
                if self._explainable(info, needs_gradients):
                    looks_like_image = len(info.shape) == 3 and info.shape[-1] in (1, 3, 4)
                    chosen.append(ExplainedInput(name, name, looks_like_image, None))
        if not chosen:
            raise InvalidArgument("the model has no input that can be attributed", field=f"{field}.inputs")
        if self.method == params.XRAI and not any(i.is_image for i in chosen):
            raise InvalidArgument("XRAI needs an image input", field=f"{field}.inputs")
        return chosen

    @staticmethod
    def _explainable(info, needs_gradients: bool) -> bool:
        if needs_gradients:
            return info.is_floating
        return np.issubdtype(info.dtype, np.number) or np.issubdtype(info.dtype, np.bool_)

    # ----- explaining ----------------------------------------------------------------

    def explain(self, inputs: Mapping[str, np.ndarray],
                override: explanation_pb2.ExplanationSpecOverride | None = None
                ) -> list[list[explanation_pb2.Attribution]]:
        """Attributions for a batch of instances, one list per instance. The batch
        shares its model passes: one prediction over the instances, one over all
        their baselines, and gradient calls shared by every instance and output."""
        override_parameters = override.parameters if override is not None and override.HasField("parameters") else None
        settings = params.resolve(self._spec.parameters, override_parameters)
        baseline_values = self._baseline_values(override)
        batch = self._batch(inputs)
        count = len(next(iter(batch.values())))
        overridden_indices = override_parameters is not None and len(override_parameters.output_indices.values) > 0
        selection_field = params.OVERRIDE_FIELD if overridden_indices else params.SPEC_FIELD
        if count == 0:
            return []
        instances = [{k: v[i] for k, v in batch.items()} for i in range(count)]
        baselines = [self._baselines_of(instance, settings, baseline_values) for instance in instances]
        scores = np.asarray(self._model.predict(batch))
        baseline_scores = self._baseline_scores(instances, baselines)
        output_shape = tuple(self._model.outputs.get(self.output_name) or ()) or (scores.shape[1],)
        if int(np.prod(output_shape)) != scores.shape[1]:
            output_shape = (scores.shape[1],)
        jobs = [(i, index) for i in range(count)
                for index in select_outputs(scores[i], settings.top_k, settings.output_indices, output_shape,
                                            field=selection_field)]
        raws = self._raw_attributions([(instances[i], baselines[i], index) for i, index in jobs], settings)
        masks: list[dict] = [{} for _ in range(count)]   # one segmentation per instance, shared by outputs
        out: list[list[explanation_pb2.Attribution]] = [[] for _ in range(count)]
        for (i, index), raw in zip(jobs, raws):
            out[i].append(self._attribution(instances[i], raw, index, scores[i], baseline_scores[i], output_shape,
                                            settings, masks[i]))
        return out

    def _batch(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = {}
        for name, info in self._model.inputs.items():
            if name not in inputs:
                raise InvalidArgument(f"instances lack the input {name!r}", field="instances")
            batch[name] = np.asarray(inputs[name]).astype(info.dtype, copy=False)
        sizes = {len(v) for v in batch.values()}
        if len(sizes) != 1:
            raise InvalidArgument("every input needs the same batch size", field="instances")
        return batch

    def _baseline_values(self, override) -> dict[str, tuple[list, str]]:
        """signature input name -> (baseline values, field), the override's replacing the metadata's."""
        values = {}
        for explained in self.inputs:
            if explained.metadata is not None and len(explained.metadata.input_baselines):
                values[explained.signature_name] = (values_to_python(explained.metadata.input_baselines),
                                                    f"{DEFAULT_FIELD}.inputs[{explained.name}].input_baselines")
        if override is not None and override.HasField("metadata"):
            by_name = {i.name: i for i in self.inputs} | {i.signature_name: i for i in self.inputs}
            for name, entry in override.metadata.inputs.items():
                if name not in by_name:
                    raise InvalidArgument(f"{name!r} is not an explained input ({sorted(i.name for i in self.inputs)})",
                                          field=f"{OVERRIDE_METADATA_FIELD}.inputs[{name}]")
                if len(entry.input_baselines):
                    values[by_name[name].signature_name] = (values_to_python(entry.input_baselines),
                                                            f"{OVERRIDE_METADATA_FIELD}.inputs[{name}].input_baselines")
        return values

    def _baselines_of(self, instance, settings, baseline_values) -> list[dict[str, np.ndarray]]:
        names = [i.signature_name for i in self.inputs]
        baselines = build_baselines({n: instance[n].shape for n in names}, {n: instance[n].dtype for n in names},
                                    baseline_values)
        if settings.max_blur_sigma > 0:
            for explained in self.inputs:
                if explained.is_image:
                    blurred = blurred_baseline(instance[explained.signature_name], settings.max_blur_sigma)
                    for baseline in baselines:
                        baseline[explained.signature_name] = blurred
        return baselines

    def _baseline_scores(self, instances, baselines) -> np.ndarray:
        """(instances, outputs): each instance's outputs averaged over its baselines, in one pass."""
        rows = [self._with_baselines(instance, b) for instance, b in zip(instances, baselines)]
        stacked = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        elements = sum(int(np.prod(np.shape(v)[1:])) for v in stacked.values()) or 1
        scores = predict_in_chunks(self._model.predict, stacked, max(1, MAX_BATCH_ELEMENTS // elements))
        bounds = np.cumsum([0] + [len(b) for b in baselines])
        return np.stack([scores[bounds[i]:bounds[i + 1]].mean(axis=0) for i in range(len(instances))])

    def _with_baselines(self, instance, baselines) -> dict[str, np.ndarray]:
        return {name: (np.stack([b[name] for b in baselines]) if name in baselines[0]
                       else np.repeat(value[None], len(baselines), axis=0))
                for name, value in instance.items()}

    def _raw_attributions(self, items, settings) -> list[dict[str, np.ndarray]]:
        """items: (instance, baselines, output index) -> attributions per explained input.
        Each uses its own seed 0, so the same request always gets the same answer."""
        if settings.method == params.SAMPLED_SHAPLEY:
            return [sampled_shapley(self._model.predict, instance, baselines, index, settings.path_count,
                                    np.random.default_rng(0))
                    for instance, baselines, index in items]
        jobs = []
        for instance, baselines, index in items:
            if settings.smooth_grad is not None:
                pairs = noisy_pairs(instance, baselines, self._noise_sigmas(settings.smooth_grad, instance),
                                    settings.smooth_grad.noisy_sample_count, np.random.default_rng(0))
            else:
                pairs = baseline_pairs(instance, baselines)
            jobs.append(PathJob(instance, pairs, index))
        instance, baselines, _ = items[0]
        elements = sum(int(np.prod(instance[n].shape)) for n in baselines[0]) or 1
        max_rows = max(settings.step_count, MAX_BATCH_ELEMENTS // elements)
        return path_integrals(self._model.gradients, jobs, settings.step_count, max_rows=max_rows)

    def _noise_sigmas(self, smooth, instance) -> dict[str, float]:
        sigmas = {}
        for explained in self.inputs:
            sigma = smooth.feature_noise_sigma.get(explained.name,
                                                   smooth.feature_noise_sigma.get(explained.signature_name, smooth.noise_sigma))
            domain = explained.metadata.feature_value_domain if explained.metadata is not None else None
            if domain is not None and domain.max_value > domain.min_value:
                sigma *= domain.max_value - domain.min_value  # sigma is a fraction of the feature's range
            sigmas[explained.signature_name] = sigma
        return sigmas

    def _attribution(self, instance, raw, index, scores, baseline_scores, output_shape, settings, masks
                     ) -> explanation_pb2.Attribution:
        error = approximation_error(raw, scores[index], baseline_scores[index])
        shown = dict(raw)
        if settings.method == params.XRAI:
            for explained in self.inputs:
                if explained.is_image:
                    name = explained.signature_name
                    image = instance[name]
                    if name not in masks:
                        masks[name] = segment_masks(image)  # one segmentation per instance, shared by outputs
                    pixels = raw[name].sum(axis=-1) if raw[name].ndim == 3 else raw[name]
                    regions = xrai(pixels, image, masks[name])
                    shown[name] = np.broadcast_to(regions[..., None] if raw[name].ndim == 3 else regions, raw[name].shape)
        attribution = explanation_pb2.Attribution(
            baseline_output_value=float(baseline_scores[index]),
            instance_output_value=float(scores[index]),
            output_index=[int(i) for i in np.unravel_index(index, output_shape)],
            output_display_name=self._display_name(index),
            approximation_error=error if np.isfinite(error) else 0.0,
            output_name=self._output_label,
        )
        fields = attribution.feature_attributions.struct_value.fields
        for i in self.inputs:
            fields[i.name].CopyFrom(to_value(np.asarray(shown[i.signature_name], np.float64)))
        warning = approximation_warning(error, settings.method)
        if warning:
            attribution.warnings.append(warning)
        if not np.isfinite(error):
            attribution.warnings.append("the baseline output equals the instance output, so attributions cannot add up to a change")
        for explained in self.inputs:
            if explained.is_image and instance[explained.signature_name].ndim in (2, 3):
                config = explained.metadata.visualization if (
                    explained.metadata is not None and explained.metadata.HasField("visualization")) else None
                attribution.images[explained.name] = attribution_png(
                    shown[explained.signature_name], instance[explained.signature_name], settings_for(config, settings.method))
        return attribution

    def _display_name(self, index: int) -> str:
        for entry in self._metadata.outputs.values():
            if entry.WhichOneof("display_name_mapping") == "index_display_name_mapping":
                names = entry.index_display_name_mapping
                if names.WhichOneof("kind") == "list_value" and index < len(names.list_value.values):
                    return str(names.list_value.values[index].string_value or "")
        return ""
