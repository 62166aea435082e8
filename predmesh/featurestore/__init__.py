"""The feature store's shared definitions (library): what a feature is, the registry, the value
codec, the Redis layout and newest-wins write script, and the Redis clients (single or cluster).

Used by the features service (reads), the ingestion service (streaming writes), the loader and
tooling, so the stored format has one definition. No gRPC and no service imports here.
"""
