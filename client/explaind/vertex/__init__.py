"""Vertex AI compatible messages (generated subpackages v1, v1beta1)."""
