"""semqa dashboard app."""
