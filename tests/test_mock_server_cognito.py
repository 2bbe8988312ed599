"""The mock's Cognito mode: AdminUpdateUserAttributes in awsJson1.1, as botocore's own client
sends it, signed for cognito-idp, throttled with 400 TooManyRequestsException."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

from async_updater.aws.credentials import Credentials
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.errors import ConfigError
from async_updater.pipeline.retry import botocore_throttling_codes
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockApi, MockConfig

from .test_cli import ThreadedMock

AK, SK = "AKIDCOGNITO", "cognito-secret"
TARGET = "AWSCognitoIdentityProviderService.AdminUpdateUserAttributes"


def cognito_mock(**kw: Any) -> ThreadedMock:
    base: dict[str, Any] = {"credentials": {AK: SK}, "api": MockApi.COGNITO, "seed": 3}
    base.update(kw)
    return ThreadedMock(MockConfig(**base))


def client(server: MockChimeServer) -> Any:
    return boto3.client(
        "cognito-idp",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        # One attempt: the test sees the mock's answer, not botocore's retries of it.
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def server() -> Iterator[MockChimeServer]:
    with cognito_mock() as s:
        yield s


def update(c: Any, user: str, **attributes: str) -> Any:
    return c.admin_update_user_attributes(
        UserPoolId="us-east-1_pool",
        Username=user,
        UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()],
    )


def test_boto3s_request_is_applied_and_attributes_accumulate(server: MockChimeServer) -> None:
    c = client(server)
    answer = update(c, "alice", email="a@example.com", **{"custom:team": "red"})
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ResponseMetadata"]["RequestId"]
    update(c, "alice", **{"custom:team": "blue"})
    assert server.attributes == {
        ("us-east-1_pool", "alice"): {"email": "a@example.com", "custom:team": "blue"}
    }
    assert server.apply_counts[("us-east-1_pool", "alice")] == 2
    assert server.applied == {}  # the Chime record is untouched
    state = server.state()
    assert state["applied_users"] == 1 and state["counters"]["accepted"] == 2


def test_throttling_is_a_400_too_many_requests_that_botocore_reads_as_throttling() -> None:
    with cognito_mock(rate_limit=0.01, burst=2, retry_after=2.0) as server:
        c = client(server)
        update(c, "u1", email="1@example.com")
        update(c, "u2", email="2@example.com")
        with pytest.raises(ClientError) as info:
            update(c, "u3", email="3@example.com")
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    assert error["Error"]["Code"] in botocore_throttling_codes()
    assert server.counters["throttled"] == 1
    assert ("us-east-1_pool", "u3") not in server.attributes


def test_an_unknown_user_wrong_target_or_bad_body_is_a_400_with_its_code() -> None:
    with cognito_mock(not_found=frozenset({"ghost"})) as server:
        c = client(server)
        with pytest.raises(ClientError) as info:
            update(c, "ghost", email="g@example.com")
        assert info.value.response["Error"]["Code"] == "UserNotFoundException"
        signer = SigV4Signer(
            host=server.url.removeprefix("http://"), region="us-east-1", service="cognito-idp"
        )
        creds = Credentials(AK, SK)
        for target, body, code in (
            ("AWSCognitoIdentityProviderService.AdminGetUser", b"{}", "UnknownOperationException"),
            (TARGET, b'{"UserPoolId": "p", "Username": "u", "UserAttributes": 5}', "Invalid"),
            (TARGET, b'{"UserPoolId": "p", "Username": "u", "Extra": 1}', "Invalid"),
        ):
            headers = signer.sign(
                "POST", "/", body, "application/x-amz-json-1.1", creds,
                headers=(("X-Amz-Target", target),),
            )  # fmt: skip
            reply = urllib3.request("POST", server.url + "/", body=body, headers=headers)
            assert reply.status == 400
            assert json.loads(reply.data)["__type"].startswith(code)
    assert server.attributes == {}


def test_a_request_signed_for_another_service_is_refused(server: MockChimeServer) -> None:
    body = json.dumps({"UserPoolId": "p", "Username": "u", "UserAttributes": []}).encode()
    signer = SigV4Signer(
        host=server.url.removeprefix("http://"), region="us-east-1", service="chime"
    )
    headers = signer.sign(
        "POST", "/", body, "application/x-amz-json-1.1", Credentials(AK, SK), time.time(),
        headers=(("X-Amz-Target", TARGET),),
    )  # fmt: skip
    reply = urllib3.request("POST", server.url + "/", body=body, headers=headers)
    assert reply.status == 403
    assert "cognito-idp" in json.loads(reply.data)["Message"]
    assert server.attributes == {}


def test_the_admin_applied_endpoint_lists_cognito_attributes(server: MockChimeServer) -> None:
    update(client(server), "bob", email="b@example.com")
    listed = json.loads(urllib3.request("GET", server.url + "/_mock/applied").data)
    assert listed == [["us-east-1_pool", "bob", {"email": "b@example.com"}, 1]]


def test_an_unknown_api_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="api must be one of chime, cognito"):
        MockConfig(api="ldap")  # type: ignore[arg-type]
    assert MockConfig(api=MockApi.COGNITO).service == "cognito-idp"
    assert MockConfig(api=MockApi.COGNITO, service="custom").service == "custom"
    assert MockConfig().service == "chime"


def test_cognito_mode_judges_the_request_time_by_the_servers_clock_and_stamps_its_date() -> None:
    body = json.dumps(
        {"UserPoolId": "p", "Username": "u", "UserAttributes": [{"Name": "email", "Value": "e"}]}
    ).encode()
    with cognito_mock(clock_offset_s=900.0) as server:
        signer = SigV4Signer(
            host=server.url.removeprefix("http://"), region="us-east-1", service="cognito-idp"
        )
        replies = []
        for skew in (0.0, 900.0):  # the client's own clock, then one corrected by the offset
            headers = signer.sign(
                "POST", "/", body, "application/x-amz-json-1.1", Credentials(AK, SK),
                time.time() + skew, headers=(("X-Amz-Target", TARGET),),
            )  # fmt: skip
            replies.append(urllib3.request("POST", server.url + "/", body=body, headers=headers))
        skewed, applied = replies
        assert skewed.status == 403
        assert json.loads(skewed.data)["Message"].startswith("Signature expired: ")
        assert server.counters["clock_skew"] == 1
        assert applied.status == 200
        assert server.attributes == {("p", "u"): {"email": "e"}}
        for reply in replies:
            date = email.utils.parsedate_to_datetime(reply.headers["Date"]).timestamp()
            assert date == pytest.approx(time.time() + 900.0, abs=5)
