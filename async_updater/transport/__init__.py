"""Sending one signed request and reading its answer; ``Transport`` is the seam tests swap."""

from .base import Response, Transport, TransportError
from .http import AiohttpTransport

__all__ = ["AiohttpTransport", "Response", "Transport", "TransportError"]
