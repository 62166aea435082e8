"""gRPC transport of the logger: servicer and converters."""
