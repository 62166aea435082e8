"""Domain logic of the ingestion service (no Kafka, no gRPC)."""
