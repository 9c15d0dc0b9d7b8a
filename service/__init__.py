"""semqa service app."""
