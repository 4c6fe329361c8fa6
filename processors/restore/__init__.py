"""Denoising and super-resolution with torch: architectures, loading, tiling, training."""
