"""Synthetic SEM-like scenes with exact ground truth, for tests, demo and training."""
