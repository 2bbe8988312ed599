"""What a model operation sends is what botocore sends: for each protocol, generated rows go
through ``ModelOperation`` and the project's signer on one side, and through botocore's own
serializer, ``prepare_request_dict``, ``AWSRequest`` and ``SigV4Auth`` on the other; method,
path, query, body and every signed header must be identical. Chime's fast path is held to
botocore's serializer the same way."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.credentials import Credentials as BotoCredentials
from botocore.serialize import create_serializer
from botocore.utils import percent_encode_sequence
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from async_updater.aws.credentials import Credentials
from async_updater.aws.sigv4 import SigV4Signer
from async_updater.config import UpdaterConfig
from async_updater.errors import RowError
from async_updater.model import UserRecord
from async_updater.operations.aws_model import ModelOperation
from async_updater.operations.chime import ChimeUpdateUserSettings
from async_updater.operations.template import PLACEHOLDER

# Text a CSV cell can hold (no control characters), stripped as the row parser strips it.
cell = (
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)
    .map(str.strip)
    .filter(bool)
)
# Header values: printable ASCII, runs of spaces and tabs inside (trimmed when signed).
header_cell = (
    st.text(st.sampled_from([*"abcXYZ019-_:/=+. ", "\t"]), min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)
tokens = st.none() | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
    min_size=1,
    max_size=200,
)
when = st.floats(min_value=946684800, max_value=4102444800, allow_nan=False)
endpoints = st.sampled_from(
    ["https://api.example.amazonaws.com", "http://127.0.0.1:8443", "http://localhost:5000"]
)


@dataclass(frozen=True)
class Case:
    spec: str
    template: Mapping[str, Any]
    columns: Mapping[str, st.SearchStrategy[str]]

    @property
    def op(self) -> ModelOperation:
        return _operation(self.spec, json.dumps(self.template))


@functools.cache
def _operation(spec: str, template: str) -> ModelOperation:
    # Built once per case, as a run builds it once: loading a model takes ~0.1 s.
    return ModelOperation(spec, json.loads(template))


CASES = [
    Case(
        "cognito-idp:AdminUpdateUserAttributes",
        {
            "UserPoolId": "{pool}",
            "Username": "{user}",
            "UserAttributes": [
                {"Name": "{attr}", "Value": "{value}"},
                {"Name": "custom:note", "Value": "set for {user}"},
            ],
        },
        {"pool": cell, "user": cell, "attr": cell, "value": cell},
    ),
    Case(
        "dynamodb:UpdateItem",
        {
            "TableName": "{table}",
            "Key": {"pk": {"S": "{key}"}},
            "UpdateExpression": "SET #a = :v",
            "ExpressionAttributeNames": {"#a": "{attr}"},
            "ExpressionAttributeValues": {":v": {"S": "{value}"}},
        },
        {"table": cell, "key": cell, "attr": cell, "value": cell},
    ),
    Case(
        "connect:UpdateUserRoutingProfile",
        {"InstanceId": "{instance}", "UserId": "{user}", "RoutingProfileId": "{profile}"},
        {"instance": cell, "user": cell, "profile": cell},
    ),
    Case(
        "connect:ListUsers",  # GET, a query string, no body and so no Content-Type
        {"InstanceId": "{instance}", "MaxResults": "{n}", "NextToken": "{token}"},
        {
            "instance": cell,
            "n": st.integers(1, 1000).map(str),
            "token": cell,
        },
    ),
    Case(
        "chime-sdk-messaging:SendChannelMessage",  # a header-bound member, signed
        {
            "ChannelArn": "{channel}",
            "Content": "{content}",
            "Type": "STANDARD",
            "Persistence": "NON_PERSISTENT",
            "ClientRequestToken": "token-{channel}",
            "ChimeBearer": "{bearer}",
        },
        # Both ARNs are at least 5 characters long in the model.
        {
            "channel": cell.map(lambda s: "arn:" + s),
            "content": cell,
            "bearer": header_cell.map(lambda s: "arn:" + s),
        },
    ),
    Case(
        "iam:TagUser",
        {"UserName": "{user}", "Tags": [{"Key": "{key}", "Value": "{value}"}]},
        {"user": cell, "key": cell, "value": cell},
    ),
    Case(
        "ec2:CreateTags",
        {"Resources": ["{resource}"], "Tags": [{"Key": "{key}", "Value": "{value}"}]},
        {"resource": cell, "key": cell, "value": cell},
    ),
    Case(
        "cloudfront:TagResource",  # '?Operation=Tag' in the model's URI plus a query member
        {"Resource": "{arn}", "Tags": {"Items": [{"Key": "{key}", "Value": "{value}"}]}},
        {"arn": cell, "key": cell, "value": cell},
    ),
    Case(
        "route53:ChangeTagsForResource",
        {
            "ResourceType": "hostedzone",
            "ResourceId": "{zone}",
            "AddTags": [{"Key": "{key}", "Value": "{value}"}],
        },
        {"zone": cell, "key": cell, "value": cell},
    ),
]


def test_the_cases_cover_every_protocol_the_issue_names() -> None:
    assert {c.op.protocol for c in CASES} >= {
        "restJson1",
        "awsJson1.0",
        "awsJson1.1",
        "awsQuery",
        "ec2Query",
        "restXml",
    }


def fill(node: Any, values: Mapping[str, Any], op: ModelOperation, path: str = "") -> Any:
    """The parameters botocore is given: the template filled in by hand, an untyped whole
    placeholder in an integer member read as an int (the one typing rule of the template)."""
    if isinstance(node, dict):
        return {k: fill(v, values, op, f"{path}.{k}" if path else k) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, values, op, path) for v in node]
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            value = values[whole.group(1)]
            member = op.model.input_shape.members.get(path)
            return int(value) if member is not None and member.type_name == "integer" else value
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
    return node


def botocore_request(
    op: ModelOperation, params: dict[str, Any], endpoint: str, creds: Credentials, at: float
) -> Any:
    model = op.model
    serializer = create_serializer(model.service_model.resolved_protocol)  # validating
    request_dict = serializer.serialize_to_request(params, model)
    prepare_request_dict(request_dict, endpoint_url=endpoint)
    request = create_request_object(request_dict)
    frozen = dt.datetime.fromtimestamp(int(at), dt.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(
            BotoCredentials(creds.access_key, creds.secret_key, creds.token),
            model.service_model.signing_name,
            "eu-west-1",
        ).add_auth(request)
    return request


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.spec)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), token=tokens, at=when, endpoint=endpoints)
def test_model_request_and_signature_match_botocore(
    case: Case, data: st.DataObject, token: str | None, at: float, endpoint: str
) -> None:
    op = case.op
    columns = list(op.columns)
    cells = [data.draw(case.columns[c], label=c) for c in columns]
    record = op.row_parser(columns)(cells, 2)
    try:
        ours = op.build(record)
    except RowError:
        assume(False)  # a value the model refuses (botocore's validator would refuse it too)
        raise
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    host = UpdaterConfig(endpoint_url=endpoint).host
    signer = SigV4Signer(host=host, region="eu-west-1", service=op.service)
    signed = signer.sign(
        ours.method,
        ours.path,
        ours.body,
        ours.content_type,
        creds,
        at,
        query=ours.query,
        headers=ours.headers,
    )

    expected = botocore_request(op, fill(case.template, record.values, op), endpoint, creds, at)
    url = urlsplit(expected.url)
    assert (ours.method, ours.path, ours.query) == (expected.method, url.path, url.query)
    assert ours.target == url.path + ("?" + url.query if url.query else "")
    assert ours.body == (expected.body or b"")
    assert signed.pop("Host") == url.netloc
    assert signed == dict(expected.headers.items())


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(st.tuples(cell, cell | st.just("")), max_size=6),
    extra=st.dictionaries(
        st.sampled_from(["X-Amz-Target", "x-amz-meta-a", "X-Custom", "Accept", "User-Agent"]),
        header_cell,
        max_size=4,
    ),
    content_type=st.sampled_from(["", "application/json", "application/x-amz-json-1.0"]),
    body=st.binary(max_size=200),
    token=tokens,
    at=when,
)
def test_any_query_and_extra_headers_are_signed_as_sigv4auth_signs_them(
    pairs: list[tuple[str, str]],
    extra: dict[str, str],
    content_type: str,
    body: bytes,
    token: str | None,
    at: float,
) -> None:
    query = percent_encode_sequence(pairs)
    creds = Credentials("AKID", "secret", token)
    signer = SigV4Signer(host="api.example.com", region="us-west-2", service="execute-api")
    ours = signer.sign(
        "POST", "/v1/x", body, content_type, creds, at, query=query, headers=tuple(extra.items())
    )
    headers = dict(extra)
    if content_type:
        headers["Content-Type"] = content_type
    request = create_request_object(
        {
            "method": "POST",
            "url": "https://api.example.com/v1/x" + (f"?{query}" if query else ""),
            "body": body,
            "headers": headers,
            "context": {},
        }
    )
    frozen = dt.datetime.fromtimestamp(int(at), dt.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(
            BotoCredentials(creds.access_key, creds.secret_key, creds.token),
            "execute-api",
            "us-west-2",
        ).add_auth(request)
    assert ours.pop("Host") == "api.example.com"
    assert ours == dict(request.headers.items())


ids = st.text(min_size=1, max_size=40).filter(
    lambda s: s.strip() not in ("", ".", "..") and s.strip().isprintable()
)


@settings(max_examples=300, deadline=None)
@given(
    account=ids,
    user=ids,
    bits=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_chime_fast_path_sends_the_bytes_botocore_serializes(
    account: str, user: str, bits: tuple[bool, bool, bool]
) -> None:
    record = UserRecord(account.strip(), user.strip(), *bits)
    ours = ChimeUpdateUserSettings().build(record)
    chime = _operation(
        "chime:UpdateUserSettings",
        '{"AccountId": "{a}", "UserId": "{u}", "UserSettings": {"Telephony": "{t:json}"}}',
    ).model
    request_dict = create_serializer("rest-json").serialize_to_request(
        {
            "AccountId": record.account_id,
            "UserId": record.user_id,
            "UserSettings": {
                "Telephony": {
                    "InboundCalling": bits[0],
                    "OutboundCalling": bits[1],
                    "SMS": bits[2],
                }
            },
        },
        chime,
    )
    prepare_request_dict(request_dict, endpoint_url="https://service.chime.aws.amazon.com")
    request = create_request_object(request_dict)
    assert ours.method == request.method
    assert ours.target == urlsplit(request.url).path
    assert ours.body == request.body
    assert ours.content_type == request.headers["Content-Type"]
    assert (ours.query, ours.headers) == ("", ())
