"""semqa training app."""
