"""Effective attribution settings: the model's ExplanationParameters with a request override on top.

Ranges follow Vertex: path_count 1..50, step_count 1..100 (default 50),
noisy_sample_count 1..50 (default 3), noise_sigma default 0.1. Errors name
the field where the bad value came from.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from google.protobuf import json_format

from ..errors import InvalidArgument
from ..methods import FIELDS, Method, method_field

# Plain strings in the attribution maths (settings, warnings, visualization defaults).
INTEGRATED_GRADIENTS = Method.INTEGRATED_GRADIENTS.value
SAMPLED_SHAPLEY = Method.SAMPLED_SHAPLEY.value
XRAI = Method.XRAI.value
# The attribution methods' oneof fields (examples excluded).
METHOD_FIELDS = {field: method.value for field, method in FIELDS.items() if method.is_attribution}
DEFAULT_STEP_COUNT = 50
DEFAULT_NOISY_SAMPLE_COUNT = 3
DEFAULT_NOISE_SIGMA = 0.1
SPEC_FIELD = "model.explanation_spec.parameters"
OVERRIDE_FIELD = "explanation_spec_override.parameters"


@dataclass(frozen=True)
class SmoothGradSettings:
    noisy_sample_count: int = DEFAULT_NOISY_SAMPLE_COUNT
    # One sigma for every explained input, in the inputs' own units (Vertex's noise_sigma).
    noise_sigma: float = DEFAULT_NOISE_SIGMA
    # Vertex's feature_noise_sigma, when given (input name -> sigma): it replaces noise_sigma,
    # and an input it does not name gets no noise.
    feature_noise_sigma: dict | None = None

    def sigma_of(self, name: str) -> float:
        if self.feature_noise_sigma is None:
            return self.noise_sigma
        return self.feature_noise_sigma.get(name, 0.0)


@dataclass(frozen=True)
class AttributionSettings:
    method: str
    step_count: int = DEFAULT_STEP_COUNT
    path_count: int = 0
    smooth_grad: SmoothGradSettings | None = None
    max_blur_sigma: float = 0.0
    top_k: int = 1
    output_indices: tuple = ()


def resolve(spec_parameters, override_parameters=None) -> AttributionSettings:
    """Settings from the spec, then the override's set fields; validates every range."""
    name = method_field(spec_parameters)
    if name not in METHOD_FIELDS:
        raise InvalidArgument("the explanation spec has no feature attribution method", field=SPEC_FIELD)
    settings = _apply(AttributionSettings(method=METHOD_FIELDS[name]), spec_parameters, name, SPEC_FIELD)
    if override_parameters is not None:
        override_method = method_field(override_parameters)
        if override_method is not None and override_method != name:
            raise InvalidArgument(
                f"an override cannot change the attribution method ({name} -> {override_method})", field=OVERRIDE_FIELD
            )
        settings = _apply(settings, override_parameters, name, OVERRIDE_FIELD)
    return settings


def _apply(settings: AttributionSettings, parameters, name: str, prefix: str) -> AttributionSettings:
    changes: dict = {}
    if parameters.top_k:
        if parameters.top_k < -1:
            raise InvalidArgument(f"top_k must be -1 (all) or positive, got {parameters.top_k}", field=f"{prefix}.top_k")
        changes["top_k"] = parameters.top_k
    if parameters.HasField("output_indices") and len(parameters.output_indices.values):
        changes["output_indices"] = tuple(json_format.MessageToDict(parameters.output_indices))
    if parameters.WhichOneof("method") == name:
        method = getattr(parameters, name)
        method_prefix = f"{prefix}.{name}"
        if name == "sampled_shapley_attribution":
            if method.path_count or prefix == SPEC_FIELD:
                changes["path_count"] = _in_range(method.path_count, 1, 50, f"{method_prefix}.path_count")
        else:
            if method.step_count:
                changes["step_count"] = _in_range(method.step_count, 1, 100, f"{method_prefix}.step_count")
            if method.HasField("smooth_grad_config"):
                changes["smooth_grad"] = _smooth_grad(method.smooth_grad_config, f"{method_prefix}.smooth_grad_config")
            if method.HasField("blur_baseline_config"):
                sigma = method.blur_baseline_config.max_blur_sigma
                if sigma < 0:
                    raise InvalidArgument("max_blur_sigma must be >= 0", field=f"{method_prefix}.blur_baseline_config.max_blur_sigma")
                changes["max_blur_sigma"] = float(sigma)
    return replace(settings, **changes)


def _in_range(value: int, low: int, high: int, field: str) -> int:
    if not low <= value <= high:
        raise InvalidArgument(f"must be in [{low}, {high}], got {value}", field=field)
    return int(value)


def _smooth_grad(config, prefix: str) -> SmoothGradSettings:
    count = config.noisy_sample_count or DEFAULT_NOISY_SAMPLE_COUNT
    _in_range(count, 1, 50, f"{prefix}.noisy_sample_count")
    which = config.WhichOneof("GradientNoiseSigma")
    sigma, per_feature = DEFAULT_NOISE_SIGMA, None
    if which == "noise_sigma":
        sigma = float(config.noise_sigma)
        if sigma < 0:
            raise InvalidArgument("noise_sigma must be >= 0", field=f"{prefix}.noise_sigma")
    elif which == "feature_noise_sigma":
        per_feature = {}
        for position, entry in enumerate(config.feature_noise_sigma.noise_sigma):
            if entry.sigma < 0 or not entry.name:
                raise InvalidArgument("each feature noise sigma needs a name and sigma >= 0",
                                      field=f"{prefix}.feature_noise_sigma.noise_sigma[{position}]")
            per_feature[entry.name] = float(entry.sigma)
    return SmoothGradSettings(noisy_sample_count=count, noise_sigma=sigma, feature_noise_sigma=per_feature)
