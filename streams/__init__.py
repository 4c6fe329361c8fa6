"""Everything in pixelfleet that touches Kafka or S3.

Layers, each importing only those below it:
  cli/      the `pixelfleet` commands
  demo/     the demo run: stack, workers, samples, live view, report
  app/      the whole settings model, the stage registry, init/submit/status internals
  catalog/  the catalog's parts (so far: the near-duplicate index of perceptual hashes)
  stages/, devstack/   the fleet's own stages (adapters from `processors` to the runner's
            contract); the local Kafka + MinIO stack
  runner/   consumes a batch, runs a stage, owns the transaction that moves it on
  io/, observe/      clients and topic reading; metrics, probes and logs
  config/   the settings the runner needs and the topic names (the leaf)
"""
