"""Pure image work: bytes and settings in, bytes and records out. No Kafka, no S3."""
