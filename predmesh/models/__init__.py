"""Model repository and model execution (library): the `model.yaml` spec, the repository
registry, pre/post-processing, ensembles, the backend interface, the per-version lifecycle,
the bounded model pool (LRU, loads on demand) and the in-process ONNX Runtime backend.

Shared by the inference orchestrator and the ONNX Runtime worker service, which serve the
same repository format with the same code. No gRPC and no service imports here.
"""
