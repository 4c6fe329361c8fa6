"""The `notify` consumer group: webhooks for done, rejected and duplicate images."""
