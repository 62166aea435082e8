"""Domain logic of the features service (no gRPC imports)."""
