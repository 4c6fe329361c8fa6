"""The catalog of every image the fleet has seen: near-duplicate lookup by perceptual hash."""
