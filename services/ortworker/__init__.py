"""ONNX Runtime workers: separate processes serving the model repository over KServe v2 gRPC."""
