"""Run configuration: one immutable value, validated once, with messages naming the option."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

from .errors import ConfigError
from .operations.base import Operation
from .pipeline.safety import DEFAULT_MAX_FAILURES, DEFAULT_REJECTIONS_IN_A_ROW, MaxFailures
from .ratelimit.concurrency import DEFAULT_MAX_CONCURRENCY, connections_allowed
from .ratelimit.controller import ControllerSettings

__all__ = ["DEFAULT_ENDPOINT", "LimitScope", "UpdaterConfig", "check_read_support"]

DEFAULT_ENDPOINT = "https://service.chime.aws.amazon.com"


class LimitScope(str, Enum):
    """Which requests share one rate limiter: all of them, or those of one account."""

    GLOBAL = "global"
    ACCOUNT = "account"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class UpdaterConfig:
    """How to run. ``rate`` is an optional ceiling in requests/s per limit scope: without one
    the controller discovers the server's limit. ``concurrency`` is a ceiling on requests in
    flight (default ``DEFAULT_MAX_CONCURRENCY``); below it the cap follows what the rate needs.
    Either is held to what the open-files limit allows (``max_concurrency``).
    ``shared_limit`` (a ``redis://`` or ``rediss://`` URL) shares each limit scope's rate,
    cool-downs and admission with every process that names the same URL, endpoint, service and
    scope (``ratelimit.shared``).
    ``max_failures`` is the failure budget (None: no budget); ``rejections_in_a_row``
    credentials rejections with no success between them stop the run (see ``safety``).

    ``read_before``: read each user's state (the operation's ``reader``) before writing, and
    report it in ``before``; the read is signed, limited and retried like a write, in the same
    scope. ``skip_unchanged`` (sets ``read_before``): a user already as asked is not written and
    ends ``unchanged``. ``dry_run`` with ``read_before`` is a plan: reads only, each row
    ``planned`` or ``unchanged``. Whether the operation can read is checked against it by
    ``check_read_support``."""

    endpoint_url: str = DEFAULT_ENDPOINT
    region: str = "us-east-1"
    profile: str | None = None
    service: str | None = None  # SigV4 signing name; None = the operation's
    rate: float | None = None
    concurrency: int | None = None
    max_attempts: int = 8
    limit_scope: LimitScope = LimitScope.GLOBAL
    timeout: float = 30.0
    connect_timeout: float = 5.0
    retry_budget: float = 500.0
    backoff_base: float = 0.05
    backoff_cap: float = 5.0
    max_cooldown: float = 60.0
    queue_size: int = 1024
    dry_run: bool = False
    max_failures: MaxFailures | None = DEFAULT_MAX_FAILURES
    rejections_in_a_row: int = DEFAULT_REJECTIONS_IN_A_ROW
    read_before: bool = False
    skip_unchanged: bool = False
    shared_limit: str | None = None  # a redis:// URL: share the limit with other processes
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def __post_init__(self) -> None:
        if self.skip_unchanged:
            # Deciding "unchanged" needs the state: one flag is enough to ask for both.
            object.__setattr__(self, "read_before", True)
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"--endpoint-url: {self.endpoint_url!r} is not an http(s) URL with a host"
            )
        if parts.query or parts.fragment:
            raise ConfigError("--endpoint-url: must not contain a query or fragment")
        if not self.region:
            raise ConfigError("--region: must not be empty")
        if self.rate is not None:
            _positive("--rate", self.rate)
        if self.concurrency is not None:
            _at_least("--concurrency", self.concurrency, 1)
        _at_least("--max-attempts", self.max_attempts, 1)
        _positive("--timeout", self.timeout)
        _positive("connect_timeout", self.connect_timeout)
        if self.retry_budget < 0:
            raise ConfigError("retry_budget: must be >= 0")
        _positive("backoff_base", self.backoff_base)
        _positive("backoff_cap", self.backoff_cap)
        _positive("max_cooldown", self.max_cooldown)
        _at_least("queue_size", self.queue_size, 1)
        _at_least("rejections_in_a_row", self.rejections_in_a_row, 1)
        if isinstance(self.max_failures, str):  # as --max-failures takes it: "50" or "10%"
            object.__setattr__(self, "max_failures", MaxFailures.parse(self.max_failures))
        elif self.max_failures is not None and not isinstance(self.max_failures, MaxFailures):
            raise ConfigError(
                f"--max-failures: {self.max_failures!r} is not a MaxFailures, a string or None"
            )
        try:
            object.__setattr__(self, "limit_scope", LimitScope(self.limit_scope))
        except ValueError:
            raise ConfigError(
                f"--limit-scope: {self.limit_scope!r} is not one of global, account"
            ) from None

    @property
    def max_concurrency(self) -> int:
        """The ceiling on requests in flight: ``concurrency`` or the default, within what the
        open-files limit allows (raised as far as needed where it can be)."""
        return connections_allowed(self._concurrency_asked)

    @property
    def open_files_bound(self) -> bool:
        """True when the open-files limit, not ``concurrency`` or its default, set the ceiling
        on requests in flight (it could not be raised as far as asked)."""
        return self.max_concurrency < self._concurrency_asked

    @property
    def _concurrency_asked(self) -> int:
        return DEFAULT_MAX_CONCURRENCY if self.concurrency is None else self.concurrency

    @property
    def sends(self) -> bool:
        """Whether a run sends any request (and so needs credentials): all but a plain dry run;
        a dry run with ``read_before`` sends the reads."""
        return not self.dry_run or self.read_before

    @property
    def host(self) -> str:
        """The Host header: the endpoint's host, with its port unless it is the default."""
        parts = urlsplit(self.endpoint_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        default = 443 if parts.scheme == "https" else 80
        return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name}: must be a number > 0, not {value!r}")
    if not math.isfinite(value):  # inf passes "> 0" only to break timers later
        raise ConfigError(f"{name}: must be a finite number, not {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name}: must be a whole number >= {low}, not {value!r}")


def check_read_support(config: UpdaterConfig, operation: Operation) -> None:
    """``ConfigError`` naming the option if ``config`` asks to read users' state and
    ``operation`` cannot (its ``reader`` is None)."""
    if not config.read_before or operation.reader is not None:
        return
    option = "--skip-unchanged" if config.skip_unchanged else "--read-before"
    raise ConfigError(
        f"{option}: operation {operation.name!r} cannot read a user's state (it has no reader; "
        "a generic operation needs --read-path-template and --read-field)"
    )
