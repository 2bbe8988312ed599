"""Benchmarks of async_updater against the mock server, side by side with the usual clients."""
