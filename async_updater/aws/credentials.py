"""AWS credentials: the value, the provider seam, fixed ones, and botocore's chain (environment,
shared config and credentials files, profiles, SSO, container and instance roles) refreshed as
they near expiry."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError, CredentialsError

__all__ = [
    "BotocoreCredentials",
    "CredentialProvider",
    "Credentials",
    "StaticCredentials",
    "resolve_credentials",
]


@dataclass(frozen=True, slots=True)
class Credentials:
    """One set of AWS credentials. The secret and token never appear in ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


class CredentialProvider(Protocol):
    """Where the signer gets credentials; ``current`` is called for every signature."""

    async def current(self) -> Credentials: ...

    async def refresh(self) -> Credentials:
        """Called after the server said the credentials expired: get fresh ones or raise."""
        ...


class StaticCredentials:
    """Fixed credentials, e.g. for the embedded mock server or a library caller's own."""

    __slots__ = ("_credentials",)

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._credentials = Credentials(access_key, secret_key, token)

    async def current(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> Credentials:
        return self._credentials


class BotocoreCredentials:
    """Credentials from botocore's chain via an aiobotocore session, refreshed as they expire.

    Refreshable credentials are re-checked at most once a second (botocore refreshes them 15
    minutes before expiry), so the per-request cost is a clock read.
    """

    __slots__ = ("_check_every", "_checked_at", "_frozen", "_profile", "_source")

    def __init__(
        self, source: Any, frozen: Credentials, profile: str | None, *, check_every: float = 1.0
    ) -> None:
        self._source = source
        self._frozen = frozen
        self._profile = profile
        self._check_every = check_every
        self._checked_at = time.monotonic()

    @classmethod
    async def resolve(cls, profile: str | None = None) -> BotocoreCredentials:
        source = await _load_chain(profile)
        return cls(source, await _freeze(source), profile)

    async def current(self) -> Credentials:
        now = time.monotonic()
        if now - self._checked_at >= self._check_every and hasattr(self._source, "refresh_needed"):
            self._checked_at = now
            self._frozen = await _freeze(self._source)
        return self._frozen

    async def refresh(self) -> Credentials:
        # The server rejected our token: ask the whole chain again (a new SSO login or a
        # rotated profile is picked up), not just the cached provider.
        self._source = await _load_chain(self._profile)
        self._frozen = await _freeze(self._source)
        self._checked_at = time.monotonic()
        return self._frozen


async def resolve_credentials(profile: str | None = None) -> BotocoreCredentials:
    """Resolve credentials from the AWS chain or raise ``CredentialsError`` (one line)."""
    return await BotocoreCredentials.resolve(profile)


async def _load_chain(profile: str | None) -> Any:
    from aiobotocore.session import AioSession
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        source = await AioSession(profile=profile).get_credentials()
    except ProfileNotFound as exc:
        raise ConfigError(f"--profile: {exc}") from None
    except BotoCoreError as exc:
        raise CredentialsError(f"could not load AWS credentials: {exc}") from None
    if source is None:
        raise CredentialsError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "use --profile, or configure the AWS CLI"
        )
    return source


async def _freeze(source: Any) -> Credentials:
    try:
        frozen = await source.get_frozen_credentials()
    except Exception as exc:  # any provider failure is "no usable credentials" to the user
        raise CredentialsError(
            f"could not refresh AWS credentials ({type(exc).__name__})"
        ) from None
    if not frozen.access_key or not frozen.secret_key:
        raise CredentialsError("the AWS credentials found are incomplete")
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)
