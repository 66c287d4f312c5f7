"""A deployment's explanation spec: Vertex's DeployedModel.explanation_spec
overrides the model's field by field. explaind serves one build per model, so
what a deployment may change is what an Explain call may change
(ExplanationSpecOverride): attribution parameters (step counts, path counts,
top_k, output_indices, SmoothGrad and blur settings), input baselines, and the
examples' neighbor_count. Any other field it sets must equal the model's
(a different data set, index, method or latent space needs a new upload).

`deployment_override` turns a deployment's spec into the override applied to
each call it serves (and a batch job's into the override of each of its rows);
`merged` lays a call's own override over it.
"""
from __future__ import annotations

from google.protobuf.message import Message

from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument
from ..methods import method_field

SPEC_FIELD = "deployed_model.explanation_spec"


def deployment_override(spec: explanation_pb2.ExplanationSpec, model_spec: explanation_pb2.ExplanationSpec,
                        field: str = SPEC_FIELD, what: str = "a deployment"
                        ) -> explanation_pb2.ExplanationSpecOverride | None:
    """The override a deployment's spec amounts to (None when it changes nothing);
    INVALID_ARGUMENT naming the first field it sets that a deployment cannot change.
    `field` and `what` name the spec in errors (a batch job's: vertex/jobs.py)."""
    if not spec.ListFields():
        return None
    method = method_field(spec.parameters) if spec.HasField("parameters") else None
    model_method = method_field(model_spec.parameters)
    if method is not None and method != model_method:
        raise InvalidArgument(f"{what} cannot change the explanation method ({model_method} -> {method}); "
                              "upload a model with that spec", field=f"{field}.parameters.{method}")
    override = explanation_pb2.ExplanationSpecOverride()
    fixed = explanation_pb2.ExplanationSpec()
    fixed.CopyFrom(spec)
    if spec.HasField("parameters"):
        parameters = fixed.parameters
        if method == "examples":
            if parameters.examples.neighbor_count:
                override.examples_override.neighbor_count = parameters.examples.neighbor_count
            parameters.examples.ClearField("neighbor_count")
        elif method is not None:
            getattr(override.parameters, method).CopyFrom(getattr(parameters, method))
            parameters.ClearField(method)
        if parameters.top_k or parameters.HasField("output_indices"):
            if model_method == "examples":
                raise InvalidArgument("top_k and output_indices apply to attributions; this model explains by "
                                      "examples", field=f"{field}.parameters")
            override.parameters.top_k = parameters.top_k
            if parameters.HasField("output_indices"):
                override.parameters.output_indices.CopyFrom(parameters.output_indices)
            parameters.ClearField("top_k")
            parameters.ClearField("output_indices")
    for name, inputs in fixed.metadata.inputs.items():
        if inputs.input_baselines:
            if model_method == "examples":
                raise InvalidArgument("input baselines apply to attributions; this model explains by examples",
                                      field=f"{field}.metadata.inputs[{name}].input_baselines")
            override.metadata.inputs[name].input_baselines.extend(inputs.input_baselines)
            inputs.ClearField("input_baselines")
    _require_same(fixed, model_spec, field, what)
    return override if override.ListFields() else None


def _require_same(mine: Message, model: Message, path: str, what: str) -> None:
    """Every field `mine` sets equals the model's (singular messages compared field by field)."""
    for field, value in mine.ListFields():
        where = f"{path}.{field.name}"
        theirs = getattr(model, field.name)
        singular_message = field.message_type is not None and not field.is_repeated \
            and not field.message_type.full_name.startswith("google.protobuf.")
        if singular_message:
            _require_same(value, theirs, where, what)
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in value:
                if key not in theirs:
                    raise InvalidArgument(f"the model has no {key!r} here; {what} can change only "
                                          "parameters, input baselines and neighbor_count", field=f"{where}[{key}]")
                entry = value[key]
                if isinstance(entry, Message):
                    _require_same(entry, theirs[key], f"{where}[{key}]", what)
                elif entry != theirs[key]:
                    raise InvalidArgument("differs from the model's", field=f"{where}[{key}]")
        elif value != theirs:
            raise InvalidArgument(f"differs from the model's: {what} can change only attribution "
                                  "parameters, input baselines and neighbor_count (upload a model with this spec)",
                                  field=where)


def merged(deployment: explanation_pb2.ExplanationSpecOverride | None,
           call: explanation_pb2.ExplanationSpecOverride) -> explanation_pb2.ExplanationSpecOverride:
    """The call's override laid over the deployment's: what the call sets wins, field by field."""
    if deployment is None:
        return call
    out = explanation_pb2.ExplanationSpecOverride()
    out.CopyFrom(deployment)
    if call.HasField("parameters"):
        if call.parameters.HasField("output_indices"):
            out.parameters.ClearField("output_indices")
        out.parameters.MergeFrom(call.parameters)
    for name, inputs in call.metadata.inputs.items():
        out.metadata.inputs[name].CopyFrom(inputs)
    if call.HasField("examples_override"):
        if call.examples_override.restrictions:
            out.examples_override.ClearField("restrictions")
        out.examples_override.MergeFrom(call.examples_override)
    return out
