"""A local stand-in for Amazon Chime (and Cognito) that verifies SigV4, throttles with a token
bucket, injects faults and records what it applied. ``python -m async_updater.testing.mock``."""

from .server import MockApi, MockChimeServer, MockConfig, initial_settings

__all__ = ["MockApi", "MockChimeServer", "MockConfig", "initial_settings"]
