"""Explanation metadata builders writing the Explainable AI SDK's `explanation_metadata.json`.

TensorFlow is needed only to create a builder (it reads the model's signature).
"""
from ._format import METADATA_FILE, Encoding, Modality
from .builder import KerasModelMetadataBuilder, SavedModelMetadataBuilder

__all__ = ["KerasModelMetadataBuilder", "SavedModelMetadataBuilder", "METADATA_FILE", "Encoding", "Modality"]
