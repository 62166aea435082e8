"""Kafka side of the ingestion service: decoding records and the consumer loop."""
