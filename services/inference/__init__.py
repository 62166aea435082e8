"""Inference orchestrator: model registry, pre/post-processing and execution backends."""
