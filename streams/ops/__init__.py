"""Day-two operations: dead-letter redrive, erasure (delete, cleanup) and replay.

Each command's selection and bookkeeping are pure functions (selection.py, pacing.py),
tested without a server; the modules that talk to Kafka and S3 stay thin around them.
"""
