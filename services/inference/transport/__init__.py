"""gRPC transport of the inference orchestrator: thin servicer plus converters."""
