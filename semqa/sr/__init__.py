"""Super-resolution: generator architectures, the LR degradation model, tiled inference."""
