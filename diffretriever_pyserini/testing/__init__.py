"""Helpers for tests and benchmarks only (the library never imports this package): tiny random-weight checkpoints
built from a config (``tiny``)."""
