"""Input limits, in a module without heavy imports so the CLI can show them in ``--help``."""

#: Default pixel-count limit: 1e8 pixels (10 000 × 10 000) is well above any SEM frame
#: (typically ≤ 6144 × 4096) and guards against decompression bombs.
DEFAULT_MAX_PIXELS: int = 100_000_000
