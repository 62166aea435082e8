"""Execution backends, one module each, all implementing `core.backend.Backend`."""
