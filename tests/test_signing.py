"""The lean signer is byte-identical to botocore's SigV4Auth; credentials come from the chain."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_updater.aws.credentials import BotocoreCredentials, Credentials, StaticCredentials
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.errors import ConfigError, CredentialsError
from async_updater.model import UserRecord
from async_updater.operations.chime import ChimeUpdateUserSettings


def botocore_headers(
    *,
    method: str,
    host: str,
    scheme: str,
    path: str,
    body: bytes,
    content_type: str,
    creds: Credentials,
    region: str,
    service: str,
    when: float,
) -> dict[str, str]:
    request = AWSRequest(
        method=method,
        url=f"{scheme}://{host}{path}",
        data=body,
        headers={"Content-Type": content_type, "Host": host},
    )
    frozen = dt.datetime.fromtimestamp(int(when), dt.timezone.utc).replace(tzinfo=None)
    # botocore reads the time through this function; freezing it is how botocore's own tests
    # sign at a chosen instant.
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(
            BotoCredentials(creds.access_key, creds.secret_key, creds.token), service, region
        ).add_auth(request)
    return dict(request.headers.items())


def ours(
    signer: SigV4Signer,
    path: str,
    body: bytes,
    creds: Credentials,
    when: float,
    method: str = "PUT",
    content_type: str = "application/json",
) -> dict[str, str]:
    return signer.sign(method, path, body, content_type, creds, when)


ids = st.text(min_size=1, max_size=40).filter(
    lambda s: s.strip() not in ("", ".", "..") and s.strip().isprintable()
)
tokens = st.none() | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
    min_size=1,
    max_size=400,
)
when = st.floats(min_value=946684800, max_value=4102444800, allow_nan=False)  # 2000..2100
hosts = st.sampled_from(
    ["service.chime.aws.amazon.com", "127.0.0.1:8443", "localhost:8080", "api.example.com"]
)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    account=ids,
    user=ids,
    settings_bits=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    token=tokens,
    when=when,
    host=hosts,
    region=st.sampled_from(["us-east-1", "eu-west-2", "ap-southeast-1"]),
)
def test_signer_matches_botocore_on_generated_chime_requests(
    account: str,
    user: str,
    settings_bits: tuple[bool, bool, bool],
    token: str | None,
    when: float,
    host: str,
    region: str,
) -> None:
    request = ChimeUpdateUserSettings().build(
        UserRecord(account.strip(), user.strip(), *settings_bits)
    )
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signer = SigV4Signer(host=host, region=region, service="chime")
    expected = botocore_headers(
        method="PUT",
        host=host,
        scheme="https",
        path=request.path,
        body=request.body,
        content_type="application/json",
        creds=creds,
        region=region,
        service="chime",
        when=when,
    )
    assert ours(signer, request.path, request.body, creds, when) == expected


@settings(max_examples=300, deadline=None)
@given(
    path=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5).map(
        lambda parts: "/" + "/".join(parts)
    ),
    body=st.binary(max_size=300),
    method=st.sampled_from(["PUT", "POST", "PATCH"]),
    content_type=st.sampled_from(
        ["application/json", "application/x-amz-json-1.1", "text/plain;  charset=utf-8"]
    ),
    when=when,
)
def test_signer_matches_botocore_on_arbitrary_paths_and_bodies(
    path: str, body: bytes, method: str, content_type: str, when: float
) -> None:
    # Generic operations may send paths with characters and shapes Chime ids never produce.
    from urllib.parse import quote

    raw_path = quote(path, safe="/:@!$&'()*+,;=-_.~")
    creds = Credentials("AKID", "secret", None)
    signer = SigV4Signer(host="api.example.com", region="us-west-2", service="execute-api")
    expected = botocore_headers(
        method=method,
        host="api.example.com",
        scheme="https",
        path=raw_path,
        body=body,
        content_type=content_type,
        creds=creds,
        region="us-west-2",
        service="execute-api",
        when=when,
    )
    assert ours(signer, raw_path, body, creds, when, method, content_type) == expected


def test_signature_scope_follows_the_date_across_midnight() -> None:
    signer = SigV4Signer(host="h", region="us-east-1", service="chime")
    creds = Credentials("AKID", "secret")
    before = signer.sign("PUT", "/a", b"{}", "application/json", creds, 1_700_006_399.0)
    after = signer.sign("PUT", "/a", b"{}", "application/json", creds, 1_700_006_400.0)
    assert "/20231114/us-east-1/chime/aws4_request" in before["Authorization"]
    assert "/20231115/us-east-1/chime/aws4_request" in after["Authorization"]
    for h, t in ((before, 1_700_006_399.0), (after, 1_700_006_400.0)):
        assert h == botocore_headers(
            method="PUT",
            host="h",
            scheme="https",
            path="/a",
            body=b"{}",
            content_type="application/json",
            creds=creds,
            region="us-east-1",
            service="chime",
            when=t,
        )


def test_one_signer_reused_across_secrets_and_days_matches_botocore_every_time() -> None:
    # The signer caches a keyed HMAC per (secret, day): every signature must start from a clean
    # copy of the right one, as the run's single signer does across refreshes and midnights.
    signer = SigV4Signer(host="h", region="us-east-1", service="chime")
    old = Credentials("AKIDOLD", "old-secret")
    new = Credentials("AKIDNEW", "new-secret", "session-token")
    times = (1_700_006_398.0, 1_700_006_399.0, 1_700_006_400.0, 1_700_006_401.0)
    for i in range(24):
        creds = (old, new, new)[i % 3]
        when = times[i // 6]
        path = f"/accounts/a/users/u{i}/settings"
        assert ours(signer, path, b"{}", creds, when) == botocore_headers(
            method="PUT",
            host="h",
            scheme="https",
            path=path,
            body=b"{}",
            content_type="application/json",
            creds=creds,
            region="us-east-1",
            service="chime",
            when=when,
        )


def test_credentials_repr_never_shows_the_secret_or_token() -> None:
    creds = Credentials("AKIDVISIBLE", "very-secret-key", "very-secret-token")
    text = repr(creds)
    assert "AKIDVISIBLE" in text
    assert "very-secret" not in text


@pytest.fixture
def isolated_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials anywhere unless the test puts them there."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


async def test_credentials_come_from_environment_variables(
    isolated_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    creds = await (await BotocoreCredentials.resolve()).current()
    assert creds == Credentials("AKIDFROMENV", "env-secret", "env-token")


async def test_credentials_come_from_a_named_profile(isolated_aws: Path) -> None:
    (isolated_aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n"
        "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = ops-secret\n"
    )
    assert (await (await BotocoreCredentials.resolve("ops")).current()).access_key == "AKIDOPS"
    assert (await (await BotocoreCredentials.resolve()).current()).access_key == "AKIDDEFAULT"


async def test_no_credentials_anywhere_is_a_one_line_credentials_error(isolated_aws: Path) -> None:
    with pytest.raises(CredentialsError, match="no AWS credentials found") as info:
        await BotocoreCredentials.resolve()
    assert "\n" not in str(info.value)


async def test_unknown_profile_is_a_config_error_naming_the_option(isolated_aws: Path) -> None:
    with pytest.raises(ConfigError, match="--profile"):
        await BotocoreCredentials.resolve("does-not-exist")


async def test_refreshable_credentials_are_refreshed_when_they_near_expiry() -> None:
    from aiobotocore.credentials import AioRefreshableCredentials

    calls = []

    def expiry(minutes: float) -> str:
        return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)).isoformat()

    async def refresh() -> dict[str, str]:
        calls.append(1)
        return {
            "access_key": f"AKIDREFRESHED{len(calls)}",
            "secret_key": "s2",
            "token": "t2",
            "expiry_time": expiry(60),
        }

    source = AioRefreshableCredentials.create_from_metadata(
        {"access_key": "AKIDOLD", "secret_key": "s1", "token": "t1", "expiry_time": expiry(1)},
        refresh_using=refresh,
        method="test",
    )
    provider = BotocoreCredentials(
        source, Credentials("AKIDOLD", "s1", "t1"), None, check_every=0.0
    )
    creds = await provider.current()
    assert creds.access_key == "AKIDREFRESHED1"  # 1 minute left < botocore's refresh window


async def test_static_credentials_are_returned_as_given() -> None:
    provider = StaticCredentials("AKID", "secret", "tok")
    assert await provider.current() == Credentials("AKID", "secret", "tok")
    assert await provider.refresh() == Credentials("AKID", "secret", "tok")
