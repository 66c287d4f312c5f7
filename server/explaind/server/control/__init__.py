"""The control plane: uploads, models and operations for every API surface."""
