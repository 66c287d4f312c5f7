"""The Explainable AI SDK (explainable-ai-sdk 1.3.3), the independent writer of metadata files in tests."""
import importlib.util
import sys
import types


def sdk_v2():
    """explainable_ai_sdk.metadata.tf.v2, or None. The package's __init__ imports its Vertex client
    (google-auth); the metadata builders do not need it, so the package is mounted without running it."""
    if "explainable_ai_sdk" not in sys.modules:          # mounted by an earlier call: find_spec would refuse it
        spec = importlib.util.find_spec("explainable_ai_sdk")
        if spec is None:
            return None
        package = types.ModuleType("explainable_ai_sdk")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["explainable_ai_sdk"] = package
    try:
        from explainable_ai_sdk.metadata import parameters
        from explainable_ai_sdk.metadata.tf import v2
    except ImportError:
        return None
    return v2, parameters
