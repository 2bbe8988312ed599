"""How the mock behaves: which API it answers, its credentials, limits, latency and faults."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from ...errors import ConfigError

__all__ = ["MockApi", "MockConfig", "initial_settings"]


class MockApi(str, Enum):
    """Which API the mock answers."""

    CHIME = "chime"  # restJson1 Chime UpdateUserSettings
    COGNITO = "cognito"  # awsJson1.1 Cognito AdminUpdateUserAttributes

    def __str__(self) -> str:
        return self.value


def _default_credentials() -> Mapping[str, str]:
    return MappingProxyType({"AKIDMOCK": "mock-secret"})


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


def _finite(value: float) -> bool:
    # bool is an int; a True rate limit is a typo, not a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock behaves. Validated on construction: a bad value raises ``ConfigError``
    (a ``ValueError``) naming the field. Mappings are copied into read-only views.

    ``burst`` defaults to ``max(1, rate_limit / 10)``. ``fault_rate`` is the share of requests
    that passed authentication and the bucket which are answered 500 or 503 (half each).
    ``verify_fraction`` is the share whose signature is recomputed; every request still goes
    through the cheap checks (key, scope, date, token). All randomness comes from ``seed``.
    ``clock_offset_s``: how far the server's clock is ahead of the wall clock (negative:
    behind); X-Amz-Date is judged against it and every ``Date`` header read from it.
    ``send_date=False`` sends no ``Date`` header at all (a server that gives no way to correct
    a client's clock).
    """

    credentials: Mapping[str, str] = field(default_factory=_default_credentials)
    session_tokens: Mapping[str, str] = field(default_factory=_empty_mapping)
    expired_tokens: frozenset[str] = frozenset()
    region: str = "us-east-1"
    service: str = "chime"
    rate_limit: float | None = None
    burst: float | None = None
    limit_scope: str = "global"
    retry_after: float | None = None
    retry_after_ms_header: bool = False
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fault_rate: float = 0.0
    not_found: frozenset[str] = frozenset()
    max_clock_skew_s: float = 300.0
    clock_offset_s: float = 0.0
    send_date: bool = True
    verify_fraction: float = 1.0
    record_events: bool = False
    seed: int = 0
    api: MockApi = MockApi.CHIME

    def __post_init__(self) -> None:
        self._normalise()
        self._check_credentials()
        self._check_limits()
        self._check_timing()

    def _normalise(self) -> None:
        try:
            object.__setattr__(self, "api", MockApi(self.api))
        except ValueError:
            raise ConfigError(
                f"api must be one of {', '.join(a.value for a in MockApi)}, got {self.api!r}"
            ) from None
        if self.api is MockApi.COGNITO and self.service == "chime":
            # The default signing name is Chime's; a Cognito API is signed for cognito-idp.
            object.__setattr__(self, "service", "cognito-idp")
        # Freeze what callers passed so a config shared between servers cannot change under them.
        object.__setattr__(self, "credentials", MappingProxyType(dict(self.credentials)))
        object.__setattr__(self, "session_tokens", MappingProxyType(dict(self.session_tokens)))
        object.__setattr__(self, "expired_tokens", frozenset(self.expired_tokens))
        object.__setattr__(self, "not_found", frozenset(self.not_found))

    def _check_credentials(self) -> None:
        for key, secret in self.credentials.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise ConfigError(f"credentials: {key!r} is not a usable access key id")
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"credentials: the secret for {key!r} must be a non-empty str")
        for key, token in self.session_tokens.items():
            if key not in self.credentials:
                raise ConfigError(f"session_tokens: access key {key!r} is not in credentials")
            if not isinstance(token, str) or not token:
                raise ConfigError(f"session_tokens: the token for {key!r} must be a non-empty str")
        if not self.region or not isinstance(self.region, str):
            raise ConfigError("region must be a non-empty string")
        if not self.service or not isinstance(self.service, str):
            raise ConfigError("service must be a non-empty string")

    def _check_limits(self) -> None:
        if self.rate_limit is not None and not (_finite(self.rate_limit) and self.rate_limit > 0):
            raise ConfigError(f"rate_limit must be > 0 requests/s or None, got {self.rate_limit!r}")
        if self.burst is not None and not (_finite(self.burst) and self.burst >= 1):
            raise ConfigError(f"burst must be >= 1 or None, got {self.burst!r}")
        if self.limit_scope not in ("global", "account"):
            raise ConfigError(
                f"limit_scope must be 'global' or 'account', got {self.limit_scope!r}"
            )
        if self.retry_after is not None and not (
            _finite(self.retry_after) and self.retry_after >= 0
        ):
            raise ConfigError(f"retry_after must be >= 0 seconds or None, got {self.retry_after!r}")

    def _check_timing(self) -> None:
        if not (_finite(self.latency_ms) and self.latency_ms >= 0):
            raise ConfigError(f"latency_ms must be >= 0, got {self.latency_ms!r}")
        if not (_finite(self.latency_jitter_ms) and self.latency_jitter_ms >= 0):
            raise ConfigError(f"latency_jitter_ms must be >= 0, got {self.latency_jitter_ms!r}")
        if not (_finite(self.fault_rate) and 0 <= self.fault_rate <= 1):
            raise ConfigError(f"fault_rate must be between 0 and 1, got {self.fault_rate!r}")
        if not (_finite(self.max_clock_skew_s) and self.max_clock_skew_s > 0):
            raise ConfigError(f"max_clock_skew_s must be > 0, got {self.max_clock_skew_s!r}")
        if not _finite(self.clock_offset_s):
            raise ConfigError(
                f"clock_offset_s must be a number of seconds, got {self.clock_offset_s!r}"
            )
        if not isinstance(self.send_date, bool):
            raise ConfigError(f"send_date must be true or false, got {self.send_date!r}")
        if not (_finite(self.verify_fraction) and 0 <= self.verify_fraction <= 1):
            raise ConfigError(
                f"verify_fraction must be between 0 and 1, got {self.verify_fraction!r}"
            )

    @property
    def effective_burst(self) -> float | None:
        """The bucket size in force, or None when there is no rate limit."""
        if self.rate_limit is None:
            return None
        return self.burst if self.burst is not None else max(1.0, self.rate_limit / 10)


def initial_settings(account_id: str, user_id: str) -> dict[str, bool]:
    """The settings of a user the server has never written: three bits of a SHA-256 of the ids,
    the same in every run, so tests and the demo know each user's state before a run."""
    key = f"{len(account_id)}:{account_id}\x00{user_id}".encode("utf-8", "surrogatepass")
    bits = hashlib.sha256(key).digest()[0]
    return {
        "InboundCalling": bool(bits & 1),
        "OutboundCalling": bool(bits & 2),
        "SMS": bool(bits & 4),
    }
