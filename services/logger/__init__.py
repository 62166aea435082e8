"""Prediction logger service: every prediction to Kafka, journaled first."""
