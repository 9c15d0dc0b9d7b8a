"""semqa: super-resolved SEM particle size distributions for pharmaceutical QA."""

__version__ = "0.1.0"
