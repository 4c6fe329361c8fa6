"""Connections to the outside: Kafka and S3 clients, the partitioner, and the topic reader
that commands, the demo and the tests use to look at what the fleet produced."""
