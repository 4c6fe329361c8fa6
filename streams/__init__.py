"""Everything in pixelfleet that touches Kafka or S3.

Layers, each importing only those below it:
  cli/      the `pixelfleet` commands
  app/      the whole settings model, the stage registry, init/submit/status internals
  demo/, devstack/   the demo run and the local Kafka + MinIO stack
  stages/   the fleet's own stages: adapters from `processors` to the runner's contract
  runner/   consumes a batch, runs a stage, owns the transaction that moves it on
  io/, observe/      clients and topic reading; metrics, probes and logs
  config/   the settings the runner needs and the topic names (the leaf)
"""
