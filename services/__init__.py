"""HTTP services, settings, metrics and the command line. The only package that knows FastAPI."""
