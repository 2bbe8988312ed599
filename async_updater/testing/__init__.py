"""Test tooling, not part of the engine: a virtual-time event loop and a simulated server.

``VirtualTimeLoop`` runs asyncio code with time that jumps to the next timer instead of
waiting for it, so a minute of simulated traffic takes a fraction of a second.
``SimulatedServer`` is a ``Transport`` that answers like a rate-limited API (token bucket,
latency, optional Retry-After) and records what it accepted.
"""

from .simulated import ServerShape, SimulatedServer
from .virtual_time import VirtualTimeLoop, run_virtual, virtual_time

__all__ = [
    "ServerShape",
    "SimulatedServer",
    "VirtualTimeLoop",
    "run_virtual",
    "virtual_time",
]
