"""Transport-neutral logger core: journal, Kafka producer wrapper, delivery pipeline."""
