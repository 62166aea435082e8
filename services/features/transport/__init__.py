"""gRPC transport of the features service: thin servicer plus protobuf<->domain converters."""
