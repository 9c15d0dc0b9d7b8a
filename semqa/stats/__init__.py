"""Statistics on sizes: particle size distributions and product equivalence (PBE)."""
