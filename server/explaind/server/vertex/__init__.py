"""Vertex AI compatibility: endpoint names, Vertex's PredictionService over gRPC, and its REST API."""
