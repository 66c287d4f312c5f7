"""FeatureExplainer: the server's entry point for feature attributions of one model.

It ties a model (tf_model.SignatureModel: predict, gradients, values of inner
tensors), the explanation spec and the metadata to the attribution functions,
and turns results into Attribution messages. Everything numeric lives in the
sibling modules: which tensor each input perturbs (explained_inputs.py), how
its attributions map back to Vertex's keys (layout.py), the methods.
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
from .explained_inputs import ExplainedInput, explained_inputs
from .integrated_gradients import PathBatch, PathJob, baseline_pairs, integrate, path_integrals
from .layout import build_layout
from .metadata import DEFAULT_FIELD, check_noise_names, load_metadata_for_model, signature_name_of, validate_metadata
from .model_fn import predict_in_chunks
from .selection import select_outputs
from .shapley import ShapleyJob, estimate, prefers_exact, shapley_values
from .visualization import attribution_b64_jpeg, attribution_png, settings_for
from .xrai import segment_masks, xrai

OVERRIDE_METADATA_FIELD = "explanation_spec_override.metadata"
# Rows per model call: all steps of a path always share one call; beyond that,
# bound the batch to about this many input elements to cap memory.
MAX_BATCH_ELEMENTS = 1 << 25
MAX_SHAPLEY_ROWS = 1 << 16
Attribution = explanation_pb2.Attribution


@dataclass(frozen=True)
class ExplainedBatch:
    attributions: list[list[explanation_pb2.Attribution]]   # per instance, per explained output
    predictions: dict[str, np.ndarray]                        # the serving signature's outputs, batched


@dataclass(frozen=True)
class AttributionArrays:
    """A batch's attributions as arrays, every row explaining K outputs, for a writer that
    needs no Attribution messages (a batch job's lines). Row i, output k holds what
    explain_batch's Attribution i, k says."""
    features: dict[str, np.ndarray]            # feature key -> (B, K, *its shape) float64, in the layout's order
    instance_values: np.ndarray                # (B, K) the explained outputs' values
    baseline_values: np.ndarray                # (B, K) averaged over the baselines
    output_index: np.ndarray                   # (B, K) flat indices into output_shape
    output_shape: tuple[int, ...]
    approximation_error: np.ndarray            # (B, K), 0 where not finite (as the message)
    output_name: str                           # the metadata's label of the explained output
    display_names: tuple[str, ...]             # by flat output index ("" past the mapping)
    predictions: dict[str, np.ndarray]         # the serving signature's outputs, batched


@dataclass(frozen=True)
class _Result:
    """One instance's attribution of one output, as features (Vertex's keys)."""
    features: dict[str, np.ndarray]
    errors: dict[str, np.ndarray] | None = None
    computation: int = Attribution.SHAPLEY_COMPUTATION_UNSPECIFIED


class FeatureExplainer:
    def __init__(self, model, spec: explanation_pb2.ExplanationSpec,
                 metadata: explanation_pb2.ExplanationMetadata | None = None,
                 metadata_field: str = DEFAULT_FIELD):
        """`model`: tf_model.SignatureModel (or one with its interface: inputs, model_inputs,
        outputs, resolve, tensor_info, bind, preprocess, values, predict, predict_all, gradients)."""
        self.method = self.method_of(spec)
        if self.method is None:
            raise InvalidArgument("the explanation spec has no feature attribution method", field=params.SPEC_FIELD)
        self._spec = spec
        params.resolve(spec.parameters)  # the model's own ranges: refused when it loads, not per call
        self._metadata = metadata or explanation_pb2.ExplanationMetadata()
        validate_metadata(self._metadata, model.model_inputs, model.outputs, field=metadata_field, method=self.method,
                          resolve=model.resolve)
        self._model = model
        self.output_name, self._output_label = self._choose_output(model, metadata_field)
        model.output_name = self.output_name
        self._gradients = self.method != params.SAMPLED_SHAPLEY
        self.inputs = explained_inputs(model, self._metadata, self.method, metadata_field)
        check_noise_names(spec.parameters, self._names(), params.SPEC_FIELD)
        graph = [s for s in self._spaces() if model.is_graph_tensor(s)]
        fetched = graph + [t for t in self._auxiliary() if model.is_graph_tensor(t) and t not in graph]
        model.bind(fed=graph, fetched=fetched)
        if graph:
            self._probe(graph)

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

    def _names(self) -> set[str]:
        return {i.name for i in self.inputs}

    def _spaces(self) -> list[str]:
        return [i.space(self._gradients) for i in self.inputs]

    def _auxiliary(self) -> list[str]:
        """Tensors read beside the perturbed ones: an encoded input's own tensor (its shape), a
        sparse input's indices and dense shape."""
        return [t for i in self.inputs for t in (i.tensor, i.indices, i.dense_shape) if t]

    def _probe(self, graph: list[str]) -> None:
        """One row of zeros through the cut graph, when the model inputs allow one: a graph
        that cannot be cut there, or gradients that cannot flow through it, are refused now
        (at upload) rather than at the first Explain."""
        infos = self._model.model_inputs
        if not all(info.is_numeric and None not in info.shape for info in infos.values()):
            return
        row = {name: np.zeros((1, *info.shape), info.dtype) for name, info in infos.items()}
        explained = next(i for i in self.inputs if i.space(self._gradients) in graph)
        key = "encoded_tensor_name" if explained.reduces(self._gradients) else "input_tensor_name"
        try:
            row |= self._model.values(row, graph + [t for t in self._auxiliary() if t not in row])
            if self._gradients:
                self._model.gradients(row, np.zeros(1, np.int64))
            else:
                self._model.predict(row)
        except Exception as error:  # noqa: BLE001 - TensorFlow raises many kinds; all mean the same here
            raise InvalidArgument(f"the model cannot be explained through {explained.space(self._gradients)!r}: "
                                  f"{str(error).splitlines()[0][:300]}", field=f"{explained.field}.{key}") from None

    # ----- explaining ----------------------------------------------------------------

    def explain(self, inputs: Mapping[str, np.ndarray],
                override: explanation_pb2.ExplanationSpecOverride | None = None
                ) -> list[list[explanation_pb2.Attribution]]:
        """Attributions for a batch of instances, one list per instance."""
        return self.explain_batch(inputs, override).attributions

    def explain_batch(self, inputs: Mapping[str, np.ndarray],
                      override: explanation_pb2.ExplanationSpecOverride | None = None) -> ExplainedBatch:
        """Attributions and predictions for a batch of instances. The batch shares its
        model passes: one prediction over the instances, one over all their baselines,
        and gradient (or Shapley) calls shared by every instance and output."""
        override_parameters, settings = self._settings(override)
        baseline_values, to_encode = self._baseline_values(override)
        batch = self._batch(inputs)
        count = len(next(iter(batch.values())))
        if count == 0:
            return ExplainedBatch([], {})
        predictions = self._model.predict_all(batch)
        model_inputs = self._model.preprocess(batch)
        values = self._model.values(model_inputs, list(dict.fromkeys(self._spaces() + self._auxiliary())))
        scores = self._scores(predictions, model_inputs, count)
        instances = [{name: value[i] for name, value in (model_inputs | values).items()} for i in range(count)]
        baselines = self._baselines(instances, model_inputs, settings, baseline_values, to_encode)
        baseline_scores = self._baseline_scores(instances, baselines)
        output_shape = self._output_shape(scores)
        overridden = override_parameters is not None and len(override_parameters.output_indices.values) > 0
        selections = [select_outputs(scores[i], settings.top_k, settings.output_indices, output_shape,
                                     field=params.OVERRIDE_FIELD if overridden else params.SPEC_FIELD)
                      for i in range(count)]
        layouts = [build_layout(self.inputs, instance, self._gradients, f"instances[{i}]")
                   for i, instance in enumerate(instances)]
        if settings.method == params.SAMPLED_SHAPLEY:
            results = self._shapley(instances, baselines, selections, layouts, settings)
        else:
            results = self._integrated(instances, baselines, selections, layouts, settings)
        masks: list[dict] = [{} for _ in range(count)]   # one segmentation per instance, shared by outputs
        out = [[self._attribution(instances[i], results[i][index], index, scores[i], baseline_scores[i],
                                  output_shape, settings, masks[i])
                for index in selections[i]] for i in range(count)]
        return ExplainedBatch(out, predictions)

    def _settings(self, override: explanation_pb2.ExplanationSpecOverride | None):
        """(the override's parameters or None, the settings they resolve to with the spec's);
        the override's noise names checked against the inputs."""
        override_parameters = override.parameters if override is not None and override.HasField("parameters") else None
        settings = params.resolve(self._spec.parameters, override_parameters)
        if override_parameters is not None:
            check_noise_names(override_parameters, self._names(), params.OVERRIDE_FIELD)
        return override_parameters, settings

    def _scores(self, predictions: dict, model_inputs: dict, count: int) -> np.ndarray:
        """The explained output's scores, (count, outputs): the prediction's, unless the model
        preprocesses (then the output of the inputs it perturbs)."""
        if self._model.preprocesses:
            return self._model.predict(model_inputs)
        return np.asarray(predictions[self.output_name], np.float64).reshape(count, -1)

    def _output_shape(self, scores: np.ndarray) -> tuple:
        """The explained output's shape (its flat size when the signature's does not match the scores)."""
        output_shape = tuple(self._model.outputs.get(self.output_name) or ()) or (scores.shape[1],)
        return output_shape if int(np.prod(output_shape)) == scores.shape[1] else (scores.shape[1],)

    def arrays_apply(self, override: explanation_pb2.ExplanationSpecOverride | None = None) -> bool:
        """Whether explain_arrays answers under `override`: integrated gradients (SmoothGrad
        too) without blur, of inputs perturbed as they are (not encoded, not sparse, not
        pictures), so every instance of a batch shares its baselines and its layout. The
        rest (Shapley, XRAI, blur IG, embeddings, images) takes explain_batch."""
        override_parameters = override.parameters if override is not None and override.HasField("parameters") else None
        try:
            settings = params.resolve(self._spec.parameters, override_parameters)
        except InvalidArgument:
            return False            # explain_batch words the refusal
        return (settings.method == params.INTEGRATED_GRADIENTS and not settings.max_blur_sigma > 0
                and all(not i.reduces(self._gradients) and i.indices is None and not i.looks_like_image
                        for i in self.inputs))

    def explain_arrays(self, inputs: Mapping[str, np.ndarray],
                       override: explanation_pb2.ExplanationSpecOverride | None = None) -> AttributionArrays | None:
        """explain_batch's answer as arrays, computed across the batch, or None where
        arrays_apply does not hold (or the scores are not finite: their order is the
        messages' to tell). The same model passes as explain_batch, in the same chunks."""
        if not self.arrays_apply(override):
            return None
        override_parameters, settings = self._settings(override)
        baseline_values, to_encode = self._baseline_values(override)
        batch = self._batch(inputs)
        count = len(next(iter(batch.values())))
        if to_encode or count == 0:
            return None
        predictions = self._model.predict_all(batch)
        model_inputs = self._model.preprocess(batch)
        spaces = self._spaces()
        arrays = model_inputs | self._model.values(model_inputs, list(dict.fromkeys(spaces + self._auxiliary())))
        scores = self._scores(predictions, model_inputs, count)
        if not np.isfinite(scores).all():
            return None
        # Baselines hold no instance's value here: one set for the batch, as each instance's would be.
        baselines = build_baselines({k: arrays[k].shape[1:] for k in spaces}, {k: arrays[k].dtype for k in spaces},
                                    baseline_values)
        first = {name: value[0] for name, value in arrays.items()}
        max_rows = self._max_rows(first)
        baseline_scores = self._batch_baseline_scores(arrays, baselines, count, max_rows)
        output_shape = self._output_shape(scores)
        chosen = self._batch_selections(scores, settings, output_shape, override_parameters)
        if chosen is None:
            return None
        layout = build_layout(self.inputs, first, self._gradients, "instances[0]")
        outputs = chosen.shape[1]
        smooth = settings.smooth_grad
        noise = {i.space(True): smooth.sigma_of(i.name) for i in self.inputs} if smooth is not None else {}
        # Jobs ordered instance, then output, as explain_batch's; starts (J, 1) against the shared baselines (1, P).
        starts = {s: np.repeat(np.asarray(arrays[s]), outputs, axis=0)[:, None] for s in spaces}
        shared = {s: np.stack([np.asarray(b[s]) for b in baselines])[None] for s in spaces}
        context = {n: np.repeat(np.asarray(v), outputs, axis=0) for n, v in arrays.items() if n not in starts}
        path = PathBatch(starts, shared, context, chosen.reshape(-1).astype(np.int64),
                         noise, smooth.noisy_sample_count if smooth is not None else 1, 0)
        raw = integrate(self._model.gradients, path, settings.step_count,
                        max_rows=max(settings.step_count, max_rows))
        flat = np.concatenate([np.asarray(raw[s], np.float64).reshape(len(chosen.reshape(-1)), -1) for s in layout.spaces],
                              axis=1)
        slots = layout.features(flat).reshape(count, outputs, layout.slot_count)
        features = {key: slots[:, :, first_slot:first_slot + int(np.prod(shape, dtype=np.int64))]
                    .reshape((count, outputs) + tuple(shape)) for key, shape, first_slot in layout.keys}
        instance_values = np.take_along_axis(scores, chosen, axis=1)
        baseline_chosen = np.take_along_axis(baseline_scores, chosen, axis=1)
        errors = _approximation_errors(features, instance_values, baseline_chosen)
        names = tuple(self._display_name(i) for i in range(scores.shape[1]))
        return AttributionArrays(features, instance_values, baseline_chosen, chosen, output_shape,
                                 np.where(np.isfinite(errors), errors, 0.0), self._output_label, names, predictions)

    def _batch_baseline_scores(self, arrays, baselines, count: int, max_rows: int) -> np.ndarray:
        """_baseline_scores of a batch whose instances share `baselines`: (count, outputs)."""
        p = len(baselines)
        stacked = {}
        for name, value in arrays.items():
            value = np.asarray(value)
            if name in baselines[0]:
                one = np.stack([b[name] for b in baselines])
                stacked[name] = np.broadcast_to(one[None], (count,) + one.shape).reshape((count * p,) + one.shape[1:])
            else:
                stacked[name] = np.repeat(value, p, axis=0)
        scores = predict_in_chunks(self._model.predict, stacked, max_rows)
        return scores.reshape(count, p, -1).mean(axis=1)

    def _batch_selections(self, scores, settings, output_shape, override_parameters) -> np.ndarray | None:
        """(count, K) flat output indices per row, as select_outputs picks them; None where it would refuse."""
        overridden = override_parameters is not None and len(override_parameters.output_indices.values) > 0
        if settings.output_indices:
            chosen = select_outputs(scores[0], settings.top_k, settings.output_indices, output_shape,
                                    field=params.OVERRIDE_FIELD if overridden else params.SPEC_FIELD)
            return np.tile(np.array(chosen, np.int64), (len(scores), 1))
        if settings.top_k < -1:
            return None
        k = scores.shape[1] if settings.top_k == -1 else min(settings.top_k or 1, scores.shape[1])
        # Highest first, ties in index order: sorted(key=-score) is a stable sort too.
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

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

    # ----- baselines -----------------------------------------------------------------

    def _baseline_values(self, override) -> tuple[dict[str, tuple[list, str]], dict[str, ExplainedInput]]:
        """(perturbed or input tensor -> (baseline values, field), input tensor -> the encoded input whose
        input baselines must be encoded). The override's input baselines replace the metadata's."""
        given: dict[str, tuple[list, str]] = {}
        for explained in self.inputs:
            entry = explained.metadata
            if entry is not None and len(entry.input_baselines):
                given[explained.name] = (values_to_python(entry.input_baselines), f"{DEFAULT_FIELD}.inputs[{explained.name}].input_baselines")
        if override is not None and override.HasField("metadata"):
            by_name = {i.name: i for i in self.inputs} | {i.tensor: i for i in self.inputs}
            for name, entry in override.metadata.inputs.items():
                if name not in by_name:
                    raise InvalidArgument(f"{name!r} is not an explained input ({sorted(self._names())})",
                                          field=f"{OVERRIDE_METADATA_FIELD}.inputs[{name}]")
                if len(entry.input_baselines):
                    given[by_name[name].name] = (values_to_python(entry.input_baselines),
                                                 f"{OVERRIDE_METADATA_FIELD}.inputs[{name}].input_baselines")
        values, to_encode = {}, {}
        for explained in self.inputs:
            entry = explained.metadata
            if explained.reduces(self._gradients):
                if explained.name in given:
                    values[explained.tensor] = given[explained.name]
                    to_encode[explained.tensor] = explained
                elif entry is not None and len(entry.encoded_baselines):
                    values[explained.encoded] = (values_to_python(entry.encoded_baselines),
                                                 f"{DEFAULT_FIELD}.inputs[{explained.name}].encoded_baselines")
            elif explained.name in given:
                values[explained.tensor] = given[explained.name]
        return values, to_encode

    def _baselines(self, instances, model_inputs, settings, baseline_values, to_encode) -> list[list[dict]]:
        """Per instance, its baselines over the perturbed tensors (default zeros): encoded
        baselines as given, input baselines of encoded inputs run through the model's encoder."""
        keys = [t for t in to_encode] + [s for s in self._spaces() if s not in
                                          {i.encoded for i in to_encode.values()}]
        per_instance = [build_baselines({k: np.shape(instance[k]) for k in keys},
                                        {k: np.asarray(instance[k]).dtype for k in keys}, baseline_values)
                        for instance in instances]
        if to_encode:
            self._encode_baselines(per_instance, model_inputs, to_encode)
        for instance, baselines in zip(instances, per_instance):
            for baseline in baselines:
                for tensor in to_encode:
                    del baseline[tensor]
            if settings.max_blur_sigma > 0:
                for explained in self.inputs:
                    if explained.looks_like_image and not explained.reduces(self._gradients):
                        blurred = blurred_baseline(instance[explained.tensor], settings.max_blur_sigma)
                        for baseline in baselines:
                            baseline[explained.tensor] = blurred
        return per_instance

    def _encode_baselines(self, per_instance, model_inputs, to_encode) -> None:
        """One model call for every instance's and baseline's encoded tensors."""
        counts = [len(b) for b in per_instance]
        rows = np.repeat(np.arange(len(per_instance)), counts)
        context = {name: np.asarray(value)[rows] for name, value in model_inputs.items()}
        replaced = {tensor: np.stack([b[tensor] for baselines in per_instance for b in baselines])
                    for tensor in to_encode}
        encoded_names = [explained.encoded for explained in to_encode.values()]
        encoded = self._model.values(context, encoded_names, replaced)
        flat = [b for baselines in per_instance for b in baselines]
        for position, baseline in enumerate(flat):
            for name in encoded_names:
                baseline[name] = encoded[name][position]

    def _baseline_scores(self, instances, baselines) -> np.ndarray:
        """(instances, outputs): each instance's outputs averaged over its baselines, in one pass."""
        rows = [self._with_baselines(instance, b) for instance, b in zip(instances, baselines)]
        stacked = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        scores = predict_in_chunks(self._model.predict, stacked, self._max_rows(instances[0]))
        bounds = np.cumsum([0] + [len(b) for b in baselines])
        return np.stack([scores[bounds[i]:bounds[i + 1]].mean(axis=0) for i in range(len(instances))])

    def _with_baselines(self, instance, baselines) -> dict[str, np.ndarray]:
        return {name: (np.stack([b[name] for b in baselines]) if name in baselines[0]
                       else np.repeat(np.asarray(value)[None], len(baselines), axis=0))
                for name, value in instance.items()}

    def _max_rows(self, instance) -> int:
        elements = sum(int(np.size(v)) for v in instance.values()) or 1
        return max(1, MAX_BATCH_ELEMENTS // elements)

    # ----- methods -------------------------------------------------------------------

    def _integrated(self, instances, baselines, selections, layouts, settings) -> list[dict[int, _Result]]:
        """Integrated gradients (with SmoothGrad's noise when configured) of every instance and
        output in shared gradient calls. Each job seeds its own noise, so the same request always
        gets the same answer, alone or in a batch."""
        smooth = settings.smooth_grad
        noise = {i.space(True): smooth.sigma_of(i.name) for i in self.inputs} if smooth is not None else {}
        samples = smooth.noisy_sample_count if smooth is not None else 1
        jobs = [PathJob(instance, baseline_pairs(instance, b), index, noise, samples, seed=0)
                for instance, b, chosen in zip(instances, baselines, selections) for index in chosen]
        max_rows = max(settings.step_count, self._max_rows(instances[0]))
        raws = iter(path_integrals(self._model.gradients, jobs, settings.step_count, max_rows=max_rows))
        results = []
        for layout, chosen in zip(layouts, selections):
            results.append({index: _Result(layout.as_dict(layout.features(layout.flatten(next(raws)))))
                            for index in chosen})
        return results

    def _shapley(self, instances, baselines, selections, layouts, settings) -> list[dict[int, _Result]]:
        """Shapley values of every instance, exact where enumerating every coalition costs no more
        than the paths asked for; the outputs of one instance share its model rows."""
        jobs = [ShapleyJob(instance, b, layout.players, chosen, settings.path_count,
                           prefers_exact(layout.player_count, settings.path_count), seed=0)
                for instance, b, layout, chosen in zip(instances, baselines, layouts, selections)]
        max_rows = min(MAX_SHAPLEY_ROWS, self._max_rows(instances[0]))
        results = []
        for values, layout in zip(shapley_values(self._model.predict, jobs, max_rows), layouts):
            computation = Attribution.EXACT if values.exact else Attribution.SAMPLED
            per_output = {}
            for index, per_path in values.per_path.items():
                mean, error = estimate(layout.player_features(per_path), values.exact)
                per_output[index] = _Result(layout.as_dict(mean), layout.as_dict(error) if error is not None else None,
                                            computation)
            results.append(per_output)
        return results

    # ----- answers -------------------------------------------------------------------

    def _attribution(self, instance, result: _Result, index, scores, baseline_scores, output_shape, settings, masks
                     ) -> explanation_pb2.Attribution:
        features = dict(result.features)
        error = approximation_error(features, scores[index], baseline_scores[index])
        if settings.method == params.XRAI:
            for explained in self._pictured(features):
                image = instance[explained.tensor]
                if explained.name not in masks:
                    masks[explained.name] = segment_masks(image)  # one segmentation per instance, shared by outputs
                raw = features[explained.name]
                pixels = raw.sum(axis=-1) if raw.ndim == 3 else raw
                regions = xrai(pixels, image, masks[explained.name])
                features[explained.name] = np.broadcast_to(regions[..., None] if raw.ndim == 3 else regions, raw.shape)
        attribution = Attribution(
            baseline_output_value=float(baseline_scores[index]),
            instance_output_value=float(scores[index]),
            output_index=[int(i) for i in np.unravel_index(index, output_shape)],
            output_display_name=self._display_name(index),
            approximation_error=error if np.isfinite(error) else 0.0,
            output_name=self._output_label,
            shapley_computation=result.computation,
        )
        pictures = {i.name: i for i in self._pictured(features) if i.shows_picture}
        fields = attribution.feature_attributions.struct_value.fields
        for key, value in features.items():
            if key in pictures:
                config = pictures[key].metadata.visualization if pictures[key].metadata.HasField("visualization") else None
                fields[key].struct_value.fields["b64_jpeg"].string_value = attribution_b64_jpeg(
                    value, instance[pictures[key].tensor], settings_for(config, settings.method))
                attribution.image_attributions.struct_value.fields[key].CopyFrom(_value(value))
            else:
                fields[key].CopyFrom(_value(value))
        if result.errors is not None:
            for key, value in result.errors.items():
                attribution.feature_attribution_errors.struct_value.fields[key].CopyFrom(_value(value))
        warning = approximation_warning(error, settings.method)
        if warning:
            attribution.warnings.append(warning)
        if not np.isfinite(error):
            attribution.warnings.append("the baseline output equals the instance output, so attributions cannot add up to a change")
        for explained in self._pictured(features):
            config = explained.metadata.visualization if (
                explained.metadata is not None and explained.metadata.HasField("visualization")) else None
            attribution.images[explained.name] = attribution_png(
                features[explained.name], instance[explained.tensor], settings_for(config, settings.method))
        return attribution

    def _pictured(self, features) -> list[ExplainedInput]:
        """Image inputs answered pixel by pixel (not merged into a group, not encoded)."""
        return [i for i in self.inputs if i.looks_like_image and not i.reduces(self._gradients)
                and i.name in features and np.ndim(features[i.name]) in (2, 3)]

    def _display_name(self, index: int) -> str:
        for entry in self._metadata.outputs.values():
            if entry.WhichOneof("display_name_mapping") == "index_display_name_mapping":
                names = entry.index_display_name_mapping
                if names.WhichOneof("kind") == "list_value" and index < len(names.list_value.values):
                    return str(names.list_value.values[index].string_value or "")
        return ""


def _approximation_errors(features: dict[str, np.ndarray], instance_values: np.ndarray,
                          baseline_values: np.ndarray) -> np.ndarray:
    """approximation_error of every (row, output) at once: the same sums, per feature then across."""
    total = np.zeros(instance_values.shape)
    for value in features.values():
        total = total + value.reshape(value.shape[:2] + (-1,)).sum(axis=2)
    gap = instance_values - baseline_values
    residual = np.abs(total - gap)
    small = np.abs(gap) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(small, np.where(residual < 1e-9, 0.0, np.inf), residual / np.abs(gap))


def _value(array: np.ndarray):
    array = np.asarray(array, np.float64)
    return to_value(float(array) if array.ndim == 0 else array)
