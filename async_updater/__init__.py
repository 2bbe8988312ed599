"""async_updater: apply per-user settings to a rate-limited, SigV4-signed REST API."""

__version__ = "0.1.0"
