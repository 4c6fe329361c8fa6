"""Everything in pixelfleet that touches Kafka or S3."""
