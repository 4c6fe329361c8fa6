"""The event contracts of pixelfleet."""
