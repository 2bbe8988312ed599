"""A local stand-in for Amazon Chime (and Cognito) that verifies SigV4, throttles with a token
bucket, injects faults and records what it applied. ``python -m async_updater.testing.mock``."""

from .config import MockApi, MockConfig, initial_settings
from .server import MockChimeServer

__all__ = ["MockApi", "MockChimeServer", "MockConfig", "initial_settings"]
