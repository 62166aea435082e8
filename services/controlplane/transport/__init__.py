"""gRPC transport of the control plane: the ADS servicer and the admin API."""
