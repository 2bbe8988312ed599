"""Where an AWS operation goes and how it is signed, by botocore's own endpoint resolver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .catalog import botocore_session

if TYPE_CHECKING:
    from ..operations.aws_model import ModelOperation

__all__ = ["ResolvedEndpoint", "resolve_endpoint"]


@dataclass(frozen=True, slots=True)
class ResolvedEndpoint:
    """Where to send and how to sign: the URL, the SigV4 signing name and region."""

    url: str
    signing_name: str
    signing_region: str


def resolve_endpoint(
    operation: ModelOperation,
    region: str,
    *,
    endpoint_url: str | None = None,
    profile: str | None = None,
    session: Any = None,
) -> ResolvedEndpoint:
    """Where ``operation`` goes and how it is signed, by botocore's endpoint resolver: an
    explicit ``endpoint_url``, else ``AWS_ENDPOINT_URL_<SERVICE_ID>``, the profile's
    ``services`` section, ``AWS_ENDPOINT_URL``, the profile's ``endpoint_url`` (as the AWS SDKs
    define them), else the service's endpoint rules for ``region``. Signing name and region come
    from the endpoint's auth scheme when it names them, else from the model and ``region``."""
    from botocore.exceptions import BotoCoreError

    session = session or botocore_session(profile)
    try:
        # A client is the one place botocore puts the endpoint sources and rules together;
        # it is built once per run, for this, and never sends anything.
        client = session.create_client(
            operation.service_name,
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="unused",
            aws_secret_access_key="unused",
        )
        try:
            # botocore resolves an operation's endpoint with its auth scheme (signing name and
            # region) only inside a call; the resolver is the one way to ask without sending.
            resolver = client._ruleset_resolver  # noqa: SLF001
            endpoint = resolver.construct_endpoint(
                operation_model=client.meta.service_model.operation_model(operation.operation_name),
                call_args={},
                request_context={},
            )
            url, properties = endpoint.url, endpoint.properties or {}
        finally:
            client.close()
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(
            f"cannot resolve the endpoint of {operation.service_name} in {region}: {exc}"
        ) from None
    signing_name, signing_region = operation.service, region
    for scheme in properties.get("authSchemes") or ():
        if scheme.get("name") == "sigv4":
            signing_name = scheme.get("signingName") or signing_name
            signing_region = scheme.get("signingRegion") or signing_region
            break
    return ResolvedEndpoint(str(url), signing_name, signing_region)
