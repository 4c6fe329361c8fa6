"""What a running process shows: Prometheus metrics, health probes, structured logs."""
