"""Streaming feature ingestion: `feature-events` (Kafka) -> quality gates -> Redis (newest event wins)."""
