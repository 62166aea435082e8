"""Triton model-repository layout for our models (config writer, python-backend model, GPU check)."""
