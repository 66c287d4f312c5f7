"""The serving side: the manager of loaded models, the servables, the batching
engine and the data plane every API surface calls."""
