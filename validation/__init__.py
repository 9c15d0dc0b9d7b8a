"""semqa validation app."""
