"""Sending one signed request and reading its answer; ``Transport`` is the seam tests swap."""

from .http import AiohttpTransport, Response, Transport, TransportError

__all__ = ["AiohttpTransport", "Response", "Transport", "TransportError"]
