"""Domain logic of the inference orchestrator (no gRPC imports here)."""
