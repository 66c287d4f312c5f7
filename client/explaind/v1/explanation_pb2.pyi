from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplanationSpec(_message.Message):
    __slots__ = ("parameters", "metadata")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    parameters: ExplanationParameters
    metadata: ExplanationMetadata
    def __init__(self, parameters: _Optional[_Union[ExplanationParameters, _Mapping]] = ..., metadata: _Optional[_Union[ExplanationMetadata, _Mapping]] = ...) -> None: ...

class ExplanationParameters(_message.Message):
    __slots__ = ("sampled_shapley_attribution", "integrated_gradients_attribution", "xrai_attribution", "examples", "top_k", "output_indices")
    SAMPLED_SHAPLEY_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    INTEGRATED_GRADIENTS_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    XRAI_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDICES_FIELD_NUMBER: _ClassVar[int]
    sampled_shapley_attribution: SampledShapleyAttribution
    integrated_gradients_attribution: IntegratedGradientsAttribution
    xrai_attribution: XraiAttribution
    examples: Examples
    top_k: int
    output_indices: _struct_pb2.ListValue
    def __init__(self, sampled_shapley_attribution: _Optional[_Union[SampledShapleyAttribution, _Mapping]] = ..., integrated_gradients_attribution: _Optional[_Union[IntegratedGradientsAttribution, _Mapping]] = ..., xrai_attribution: _Optional[_Union[XraiAttribution, _Mapping]] = ..., examples: _Optional[_Union[Examples, _Mapping]] = ..., top_k: _Optional[int] = ..., output_indices: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ...) -> None: ...

class SampledShapleyAttribution(_message.Message):
    __slots__ = ("path_count",)
    PATH_COUNT_FIELD_NUMBER: _ClassVar[int]
    path_count: int
    def __init__(self, path_count: _Optional[int] = ...) -> None: ...

class IntegratedGradientsAttribution(_message.Message):
    __slots__ = ("step_count", "smooth_grad_config", "blur_baseline_config")
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    SMOOTH_GRAD_CONFIG_FIELD_NUMBER: _ClassVar[int]
    BLUR_BASELINE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    step_count: int
    smooth_grad_config: SmoothGradConfig
    blur_baseline_config: BlurBaselineConfig
    def __init__(self, step_count: _Optional[int] = ..., smooth_grad_config: _Optional[_Union[SmoothGradConfig, _Mapping]] = ..., blur_baseline_config: _Optional[_Union[BlurBaselineConfig, _Mapping]] = ...) -> None: ...

class XraiAttribution(_message.Message):
    __slots__ = ("step_count", "smooth_grad_config", "blur_baseline_config")
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    SMOOTH_GRAD_CONFIG_FIELD_NUMBER: _ClassVar[int]
    BLUR_BASELINE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    step_count: int
    smooth_grad_config: SmoothGradConfig
    blur_baseline_config: BlurBaselineConfig
    def __init__(self, step_count: _Optional[int] = ..., smooth_grad_config: _Optional[_Union[SmoothGradConfig, _Mapping]] = ..., blur_baseline_config: _Optional[_Union[BlurBaselineConfig, _Mapping]] = ...) -> None: ...

class SmoothGradConfig(_message.Message):
    __slots__ = ("noise_sigma", "feature_noise_sigma", "noisy_sample_count")
    NOISE_SIGMA_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NOISE_SIGMA_FIELD_NUMBER: _ClassVar[int]
    NOISY_SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    noise_sigma: float
    feature_noise_sigma: FeatureNoiseSigma
    noisy_sample_count: int
    def __init__(self, noise_sigma: _Optional[float] = ..., feature_noise_sigma: _Optional[_Union[FeatureNoiseSigma, _Mapping]] = ..., noisy_sample_count: _Optional[int] = ...) -> None: ...

class FeatureNoiseSigma(_message.Message):
    __slots__ = ("noise_sigma",)
    class NoiseSigmaForFeature(_message.Message):
        __slots__ = ("name", "sigma")
        NAME_FIELD_NUMBER: _ClassVar[int]
        SIGMA_FIELD_NUMBER: _ClassVar[int]
        name: str
        sigma: float
        def __init__(self, name: _Optional[str] = ..., sigma: _Optional[float] = ...) -> None: ...
    NOISE_SIGMA_FIELD_NUMBER: _ClassVar[int]
    noise_sigma: _containers.RepeatedCompositeFieldContainer[FeatureNoiseSigma.NoiseSigmaForFeature]
    def __init__(self, noise_sigma: _Optional[_Iterable[_Union[FeatureNoiseSigma.NoiseSigmaForFeature, _Mapping]]] = ...) -> None: ...

class BlurBaselineConfig(_message.Message):
    __slots__ = ("max_blur_sigma",)
    MAX_BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    max_blur_sigma: float
    def __init__(self, max_blur_sigma: _Optional[float] = ...) -> None: ...

class Examples(_message.Message):
    __slots__ = ("example_gcs_source", "nearest_neighbor_search_config", "presets", "gcs_source", "neighbor_count")
    class ExampleGcsSource(_message.Message):
        __slots__ = ("data_format", "gcs_source")
        class DataFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            DATA_FORMAT_UNSPECIFIED: _ClassVar[Examples.ExampleGcsSource.DataFormat]
            JSONL: _ClassVar[Examples.ExampleGcsSource.DataFormat]
        DATA_FORMAT_UNSPECIFIED: Examples.ExampleGcsSource.DataFormat
        JSONL: Examples.ExampleGcsSource.DataFormat
        DATA_FORMAT_FIELD_NUMBER: _ClassVar[int]
        GCS_SOURCE_FIELD_NUMBER: _ClassVar[int]
        data_format: Examples.ExampleGcsSource.DataFormat
        gcs_source: GcsSource
        def __init__(self, data_format: _Optional[_Union[Examples.ExampleGcsSource.DataFormat, str]] = ..., gcs_source: _Optional[_Union[GcsSource, _Mapping]] = ...) -> None: ...
    EXAMPLE_GCS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NEAREST_NEIGHBOR_SEARCH_CONFIG_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    GCS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    example_gcs_source: Examples.ExampleGcsSource
    nearest_neighbor_search_config: _struct_pb2.Value
    presets: Presets
    gcs_source: GcsSource
    neighbor_count: int
    def __init__(self, example_gcs_source: _Optional[_Union[Examples.ExampleGcsSource, _Mapping]] = ..., nearest_neighbor_search_config: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., presets: _Optional[_Union[Presets, _Mapping]] = ..., gcs_source: _Optional[_Union[GcsSource, _Mapping]] = ..., neighbor_count: _Optional[int] = ...) -> None: ...

class GcsSource(_message.Message):
    __slots__ = ("uris",)
    URIS_FIELD_NUMBER: _ClassVar[int]
    uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uris: _Optional[_Iterable[str]] = ...) -> None: ...

class Presets(_message.Message):
    __slots__ = ("query", "modality")
    class Query(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PRECISE: _ClassVar[Presets.Query]
        FAST: _ClassVar[Presets.Query]
    PRECISE: Presets.Query
    FAST: Presets.Query
    class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODALITY_UNSPECIFIED: _ClassVar[Presets.Modality]
        IMAGE: _ClassVar[Presets.Modality]
        TEXT: _ClassVar[Presets.Modality]
        TABULAR: _ClassVar[Presets.Modality]
    MODALITY_UNSPECIFIED: Presets.Modality
    IMAGE: Presets.Modality
    TEXT: Presets.Modality
    TABULAR: Presets.Modality
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    query: Presets.Query
    modality: Presets.Modality
    def __init__(self, query: _Optional[_Union[Presets.Query, str]] = ..., modality: _Optional[_Union[Presets.Modality, str]] = ...) -> None: ...

class ExplanationMetadata(_message.Message):
    __slots__ = ("inputs", "outputs", "feature_attributions_schema_uri", "latent_space_source")
    class InputMetadata(_message.Message):
        __slots__ = ("input_baselines", "input_tensor_name", "encoding", "modality", "feature_value_domain", "indices_tensor_name", "dense_shape_tensor_name", "index_feature_mapping", "encoded_tensor_name", "encoded_baselines", "visualization", "group_name")
        class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            ENCODING_UNSPECIFIED: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            IDENTITY: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            BAG_OF_FEATURES: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            BAG_OF_FEATURES_SPARSE: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            INDICATOR: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            COMBINED_EMBEDDING: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
            CONCAT_EMBEDDING: _ClassVar[ExplanationMetadata.InputMetadata.Encoding]
        ENCODING_UNSPECIFIED: ExplanationMetadata.InputMetadata.Encoding
        IDENTITY: ExplanationMetadata.InputMetadata.Encoding
        BAG_OF_FEATURES: ExplanationMetadata.InputMetadata.Encoding
        BAG_OF_FEATURES_SPARSE: ExplanationMetadata.InputMetadata.Encoding
        INDICATOR: ExplanationMetadata.InputMetadata.Encoding
        COMBINED_EMBEDDING: ExplanationMetadata.InputMetadata.Encoding
        CONCAT_EMBEDDING: ExplanationMetadata.InputMetadata.Encoding
        class FeatureValueDomain(_message.Message):
            __slots__ = ("min_value", "max_value", "original_mean", "original_stddev")
            MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
            MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
            ORIGINAL_MEAN_FIELD_NUMBER: _ClassVar[int]
            ORIGINAL_STDDEV_FIELD_NUMBER: _ClassVar[int]
            min_value: float
            max_value: float
            original_mean: float
            original_stddev: float
            def __init__(self, min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., original_mean: _Optional[float] = ..., original_stddev: _Optional[float] = ...) -> None: ...
        class Visualization(_message.Message):
            __slots__ = ("type", "polarity", "color_map", "clip_percent_upperbound", "clip_percent_lowerbound", "overlay_type")
            class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
                __slots__ = ()
                TYPE_UNSPECIFIED: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Type]
                PIXELS: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Type]
                OUTLINES: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Type]
            TYPE_UNSPECIFIED: ExplanationMetadata.InputMetadata.Visualization.Type
            PIXELS: ExplanationMetadata.InputMetadata.Visualization.Type
            OUTLINES: ExplanationMetadata.InputMetadata.Visualization.Type
            class Polarity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
                __slots__ = ()
                POLARITY_UNSPECIFIED: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Polarity]
                POSITIVE: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Polarity]
                NEGATIVE: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Polarity]
                BOTH: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.Polarity]
            POLARITY_UNSPECIFIED: ExplanationMetadata.InputMetadata.Visualization.Polarity
            POSITIVE: ExplanationMetadata.InputMetadata.Visualization.Polarity
            NEGATIVE: ExplanationMetadata.InputMetadata.Visualization.Polarity
            BOTH: ExplanationMetadata.InputMetadata.Visualization.Polarity
            class ColorMap(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
                __slots__ = ()
                COLOR_MAP_UNSPECIFIED: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                PINK_GREEN: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                VIRIDIS: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                RED: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                GREEN: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                RED_GREEN: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
                PINK_WHITE_GREEN: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.ColorMap]
            COLOR_MAP_UNSPECIFIED: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            PINK_GREEN: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            VIRIDIS: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            RED: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            GREEN: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            RED_GREEN: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            PINK_WHITE_GREEN: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            class OverlayType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
                __slots__ = ()
                OVERLAY_TYPE_UNSPECIFIED: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.OverlayType]
                NONE: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.OverlayType]
                ORIGINAL: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.OverlayType]
                GRAYSCALE: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.OverlayType]
                MASK_BLACK: _ClassVar[ExplanationMetadata.InputMetadata.Visualization.OverlayType]
            OVERLAY_TYPE_UNSPECIFIED: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            NONE: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            ORIGINAL: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            GRAYSCALE: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            MASK_BLACK: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            TYPE_FIELD_NUMBER: _ClassVar[int]
            POLARITY_FIELD_NUMBER: _ClassVar[int]
            COLOR_MAP_FIELD_NUMBER: _ClassVar[int]
            CLIP_PERCENT_UPPERBOUND_FIELD_NUMBER: _ClassVar[int]
            CLIP_PERCENT_LOWERBOUND_FIELD_NUMBER: _ClassVar[int]
            OVERLAY_TYPE_FIELD_NUMBER: _ClassVar[int]
            type: ExplanationMetadata.InputMetadata.Visualization.Type
            polarity: ExplanationMetadata.InputMetadata.Visualization.Polarity
            color_map: ExplanationMetadata.InputMetadata.Visualization.ColorMap
            clip_percent_upperbound: float
            clip_percent_lowerbound: float
            overlay_type: ExplanationMetadata.InputMetadata.Visualization.OverlayType
            def __init__(self, type: _Optional[_Union[ExplanationMetadata.InputMetadata.Visualization.Type, str]] = ..., polarity: _Optional[_Union[ExplanationMetadata.InputMetadata.Visualization.Polarity, str]] = ..., color_map: _Optional[_Union[ExplanationMetadata.InputMetadata.Visualization.ColorMap, str]] = ..., clip_percent_upperbound: _Optional[float] = ..., clip_percent_lowerbound: _Optional[float] = ..., overlay_type: _Optional[_Union[ExplanationMetadata.InputMetadata.Visualization.OverlayType, str]] = ...) -> None: ...
        INPUT_BASELINES_FIELD_NUMBER: _ClassVar[int]
        INPUT_TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
        ENCODING_FIELD_NUMBER: _ClassVar[int]
        MODALITY_FIELD_NUMBER: _ClassVar[int]
        FEATURE_VALUE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
        INDICES_TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
        DENSE_SHAPE_TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
        INDEX_FEATURE_MAPPING_FIELD_NUMBER: _ClassVar[int]
        ENCODED_TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
        ENCODED_BASELINES_FIELD_NUMBER: _ClassVar[int]
        VISUALIZATION_FIELD_NUMBER: _ClassVar[int]
        GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
        input_baselines: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
        input_tensor_name: str
        encoding: ExplanationMetadata.InputMetadata.Encoding
        modality: str
        feature_value_domain: ExplanationMetadata.InputMetadata.FeatureValueDomain
        indices_tensor_name: str
        dense_shape_tensor_name: str
        index_feature_mapping: _containers.RepeatedScalarFieldContainer[str]
        encoded_tensor_name: str
        encoded_baselines: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
        visualization: ExplanationMetadata.InputMetadata.Visualization
        group_name: str
        def __init__(self, input_baselines: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., input_tensor_name: _Optional[str] = ..., encoding: _Optional[_Union[ExplanationMetadata.InputMetadata.Encoding, str]] = ..., modality: _Optional[str] = ..., feature_value_domain: _Optional[_Union[ExplanationMetadata.InputMetadata.FeatureValueDomain, _Mapping]] = ..., indices_tensor_name: _Optional[str] = ..., dense_shape_tensor_name: _Optional[str] = ..., index_feature_mapping: _Optional[_Iterable[str]] = ..., encoded_tensor_name: _Optional[str] = ..., encoded_baselines: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., visualization: _Optional[_Union[ExplanationMetadata.InputMetadata.Visualization, _Mapping]] = ..., group_name: _Optional[str] = ...) -> None: ...
    class OutputMetadata(_message.Message):
        __slots__ = ("index_display_name_mapping", "display_name_mapping_key", "output_tensor_name")
        INDEX_DISPLAY_NAME_MAPPING_FIELD_NUMBER: _ClassVar[int]
        DISPLAY_NAME_MAPPING_KEY_FIELD_NUMBER: _ClassVar[int]
        OUTPUT_TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
        index_display_name_mapping: _struct_pb2.Value
        display_name_mapping_key: str
        output_tensor_name: str
        def __init__(self, index_display_name_mapping: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., display_name_mapping_key: _Optional[str] = ..., output_tensor_name: _Optional[str] = ...) -> None: ...
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ExplanationMetadata.InputMetadata
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ExplanationMetadata.InputMetadata, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ExplanationMetadata.OutputMetadata
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ExplanationMetadata.OutputMetadata, _Mapping]] = ...) -> None: ...
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ATTRIBUTIONS_SCHEMA_URI_FIELD_NUMBER: _ClassVar[int]
    LATENT_SPACE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.MessageMap[str, ExplanationMetadata.InputMetadata]
    outputs: _containers.MessageMap[str, ExplanationMetadata.OutputMetadata]
    feature_attributions_schema_uri: str
    latent_space_source: str
    def __init__(self, inputs: _Optional[_Mapping[str, ExplanationMetadata.InputMetadata]] = ..., outputs: _Optional[_Mapping[str, ExplanationMetadata.OutputMetadata]] = ..., feature_attributions_schema_uri: _Optional[str] = ..., latent_space_source: _Optional[str] = ...) -> None: ...

class ExplanationSpecOverride(_message.Message):
    __slots__ = ("parameters", "metadata", "examples_override")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    parameters: ExplanationParameters
    metadata: ExplanationMetadataOverride
    examples_override: ExamplesOverride
    def __init__(self, parameters: _Optional[_Union[ExplanationParameters, _Mapping]] = ..., metadata: _Optional[_Union[ExplanationMetadataOverride, _Mapping]] = ..., examples_override: _Optional[_Union[ExamplesOverride, _Mapping]] = ...) -> None: ...

class ExplanationMetadataOverride(_message.Message):
    __slots__ = ("inputs",)
    class InputMetadataOverride(_message.Message):
        __slots__ = ("input_baselines",)
        INPUT_BASELINES_FIELD_NUMBER: _ClassVar[int]
        input_baselines: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
        def __init__(self, input_baselines: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ExplanationMetadataOverride.InputMetadataOverride
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ExplanationMetadataOverride.InputMetadataOverride, _Mapping]] = ...) -> None: ...
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.MessageMap[str, ExplanationMetadataOverride.InputMetadataOverride]
    def __init__(self, inputs: _Optional[_Mapping[str, ExplanationMetadataOverride.InputMetadataOverride]] = ...) -> None: ...

class ExamplesOverride(_message.Message):
    __slots__ = ("neighbor_count", "crowding_count", "restrictions", "return_embeddings", "data_format")
    class DataFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DATA_FORMAT_UNSPECIFIED: _ClassVar[ExamplesOverride.DataFormat]
        INSTANCES: _ClassVar[ExamplesOverride.DataFormat]
        EMBEDDINGS: _ClassVar[ExamplesOverride.DataFormat]
    DATA_FORMAT_UNSPECIFIED: ExamplesOverride.DataFormat
    INSTANCES: ExamplesOverride.DataFormat
    EMBEDDINGS: ExamplesOverride.DataFormat
    NEIGHBOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    CROWDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    RETURN_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DATA_FORMAT_FIELD_NUMBER: _ClassVar[int]
    neighbor_count: int
    crowding_count: int
    restrictions: _containers.RepeatedCompositeFieldContainer[ExamplesRestrictionsNamespace]
    return_embeddings: bool
    data_format: ExamplesOverride.DataFormat
    def __init__(self, neighbor_count: _Optional[int] = ..., crowding_count: _Optional[int] = ..., restrictions: _Optional[_Iterable[_Union[ExamplesRestrictionsNamespace, _Mapping]]] = ..., return_embeddings: _Optional[bool] = ..., data_format: _Optional[_Union[ExamplesOverride.DataFormat, str]] = ...) -> None: ...

class ExamplesRestrictionsNamespace(_message.Message):
    __slots__ = ("namespace_name", "allow", "deny")
    NAMESPACE_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    namespace_name: str
    allow: _containers.RepeatedScalarFieldContainer[str]
    deny: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace_name: _Optional[str] = ..., allow: _Optional[_Iterable[str]] = ..., deny: _Optional[_Iterable[str]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("attributions", "neighbors", "input", "embedding")
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    attributions: _containers.RepeatedCompositeFieldContainer[Attribution]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    input: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, attributions: _Optional[_Iterable[_Union[Attribution, _Mapping]]] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ..., input: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("neighbor_id", "neighbor_distance", "embedding")
    NEIGHBOR_ID_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    neighbor_id: str
    neighbor_distance: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, neighbor_id: _Optional[str] = ..., neighbor_distance: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("baseline_output_value", "instance_output_value", "feature_attributions", "output_index", "output_display_name", "approximation_error", "output_name", "warnings", "images", "feature_attribution_errors", "shapley_computation", "image_attributions")
    class ShapleyComputation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SHAPLEY_COMPUTATION_UNSPECIFIED: _ClassVar[Attribution.ShapleyComputation]
        SAMPLED: _ClassVar[Attribution.ShapleyComputation]
        EXACT: _ClassVar[Attribution.ShapleyComputation]
    SHAPLEY_COMPUTATION_UNSPECIFIED: Attribution.ShapleyComputation
    SAMPLED: Attribution.ShapleyComputation
    EXACT: Attribution.ShapleyComputation
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    BASELINE_OUTPUT_VALUE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_OUTPUT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ATTRIBUTION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SHAPLEY_COMPUTATION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    baseline_output_value: float
    instance_output_value: float
    feature_attributions: _struct_pb2.Value
    output_index: _containers.RepeatedScalarFieldContainer[int]
    output_display_name: str
    approximation_error: float
    output_name: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.ScalarMap[str, bytes]
    feature_attribution_errors: _struct_pb2.Value
    shapley_computation: Attribution.ShapleyComputation
    image_attributions: _struct_pb2.Value
    def __init__(self, baseline_output_value: _Optional[float] = ..., instance_output_value: _Optional[float] = ..., feature_attributions: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output_index: _Optional[_Iterable[int]] = ..., output_display_name: _Optional[str] = ..., approximation_error: _Optional[float] = ..., output_name: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., images: _Optional[_Mapping[str, bytes]] = ..., feature_attribution_errors: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., shapley_computation: _Optional[_Union[Attribution.ShapleyComputation, str]] = ..., image_attributions: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
