"""`pixelfleet demo`: the whole fleet on a folder of images, watched live, then reported."""
