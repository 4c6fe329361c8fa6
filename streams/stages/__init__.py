"""The fleet's own stages: adapters from the pure processors to the runner's contract."""
