"""gRPC side of the gateway: servicer, converters and upstream clients."""
