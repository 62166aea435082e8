"""Gateway domain logic; no gRPC imports here."""
