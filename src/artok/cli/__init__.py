"""artok command line."""
