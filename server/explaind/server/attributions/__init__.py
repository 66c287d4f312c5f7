"""Feature attributions: integrated gradients (with SmoothGrad and blur baselines), sampled
Shapley and XRAI over numpy arrays and model callables, plus the explanation metadata and
FeatureExplainer, the server's entry point."""
from .explainer import FeatureExplainer
from .metadata import load_metadata_for_model, parse_metadata, validate_metadata

__all__ = ["FeatureExplainer", "load_metadata_for_model", "parse_metadata", "validate_metadata"]
