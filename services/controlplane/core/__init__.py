"""Control-plane domain logic: mesh config, Envoy resources, snapshots and their cache (no gRPC)."""
