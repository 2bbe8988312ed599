"""Test tooling, not part of the engine: a virtual-time event loop and a simulated server.

``VirtualTimeLoop`` runs asyncio code with time that jumps to the next timer instead of
waiting for it, so a minute of simulated traffic takes a fraction of a second.
``SimulatedServer`` is a ``Transport`` that answers like a rate-limited API (token bucket,
latency, optional Retry-After) and records what it accepted. ``MockChimeServer`` (in
``testing.mock``) is a real HTTP server that verifies SigV4, for end-to-end tests and benchmarks.
"""

from typing import TYPE_CHECKING, Any

from .simulated import ServerShape, SimulatedServer
from .virtual_time import VirtualTimeLoop, run_virtual, virtual_time

if TYPE_CHECKING:
    from .mock import MockApi, MockChimeServer, MockConfig


def __getattr__(name: str) -> Any:
    # The mock server loads lazily: ``python -m async_updater.testing.mock`` then runs a module
    # the package has not already imported, and code that never uses it does not load
    # aiohttp.web.
    if name in ("MockApi", "MockChimeServer", "MockConfig"):
        from . import mock

        return getattr(mock, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MockApi",
    "MockChimeServer",
    "MockConfig",
    "ServerShape",
    "SimulatedServer",
    "VirtualTimeLoop",
    "run_virtual",
    "virtual_time",
]
