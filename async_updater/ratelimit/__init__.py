"""Rate limiting: per-scope queues and pacers, the controller that finds the server's limit,
and the in-flight cap. ``Scheduler`` is the only part that waits; the rest is arithmetic."""

from .clock import Cancellable, Clock, LoopClock
from .concurrency import DEFAULT_MAX_CONCURRENCY, InFlightLimit
from .controller import ControllerSettings, Mode, RateController
from .estimator import DrainFit, LimitEstimate, Outcome, RoundTrip, Sample, SendLog
from .pacer import Pacer
from .scheduler import Scheduler, Scope

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "Cancellable",
    "Clock",
    "ControllerSettings",
    "DrainFit",
    "InFlightLimit",
    "LimitEstimate",
    "LoopClock",
    "Mode",
    "Outcome",
    "Pacer",
    "RateController",
    "RoundTrip",
    "Sample",
    "Scheduler",
    "Scope",
    "SendLog",
]
