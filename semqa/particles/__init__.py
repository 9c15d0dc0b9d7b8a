"""Finding and sizing particles: segmentation and per-particle measurement."""
