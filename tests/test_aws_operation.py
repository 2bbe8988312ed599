"""Model operations: params templates checked against the model, rows checked where the model
constrains them, errors read by each protocol's parser, throttling by code whatever the status,
endpoints resolved as the AWS SDKs resolve them, and the ``operations`` and ``run`` commands."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from async_updater.aws.catalog import describe_operation, list_operations, list_services, load_model
from async_updater.aws.endpoint import resolve_endpoint
from async_updater.errors import ConfigError, RowError
from async_updater.model import RowRecord
from async_updater.operations.aws_model import ModelOperation
from async_updater.pipeline.retry import (
    THROTTLING_CODES,
    ErrorClass,
    botocore_throttling_codes,
    classify,
)
from async_updater.transport.http import AiohttpTransport

from .test_cli import Run, one_line_error, run  # noqa: F401  (run is a fixture)

COGNITO = "cognito-idp:AdminUpdateUserAttributes"
COGNITO_TEMPLATE: dict[str, Any] = {
    "UserPoolId": "{pool}",
    "Username": "{username}",
    "UserAttributes": [{"Name": "email", "Value": "{email}"}],
}


@functools.cache
def _op(spec: str, template: str, id_column: str | None = None) -> ModelOperation:
    return ModelOperation(spec, json.loads(template), id_column=id_column)


def op(spec: str = COGNITO, template: Any = None, id_column: str | None = None) -> ModelOperation:
    """A model operation, built once per distinct template (a model loads in ~0.1 s)."""
    return _op(spec, json.dumps(COGNITO_TEMPLATE if template is None else template), id_column)


def fresh(spec: str, template: Any) -> ModelOperation:
    """An operation whose first-row check has not run yet."""
    return ModelOperation(spec, template)


def record(o: ModelOperation, **cells: str) -> RowRecord:
    header = list(cells)
    parsed = o.row_parser(header)(list(cells.values()), 2)
    assert isinstance(parsed, RowRecord)
    return parsed


# -- templates against the model ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"UserPoolId": "{pool}"}, "misses required members Username, UserAttributes"),
        (
            {**COGNITO_TEMPLATE, "UserAttributes": [{"Nmae": "email"}]},
            "UserAttributes[0].Nmae is not a member of AttributeType; did you mean Name?",
        ),
        ({**COGNITO_TEMPLATE, "Surname": "x"}, "Surname is not a member"),
        ({**COGNITO_TEMPLATE, "UserAttributes": [{"Value": "x"}]}, "UserAttributes[0].Name"),
        ({**COGNITO_TEMPLATE, "UserPoolId": "{pool:int}"}, "UserPoolId: {pool:int} cannot fill"),
        ({**COGNITO_TEMPLATE, "UserPoolId": 7}, "Invalid type for parameter UserPoolId"),
        ({**COGNITO_TEMPLATE, "UserAttributes": {"Name": "x"}}, "UserAttributes must be a list"),
        ({**COGNITO_TEMPLATE, "ClientMetadata": ["x"]}, "ClientMetadata must be an object"),
        ({**COGNITO_TEMPLATE, "Username": "{a} and {b:date}"}, "{b:date}: type must be one of"),
        ([1, 2], "the template must be an object"),
    ],
)
def test_a_template_that_does_not_fit_the_model_is_one_config_error_naming_the_member(
    template: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ModelOperation(COGNITO, template)
    assert expected in str(info.value)
    assert str(info.value).startswith("--params-template: ")
    assert "\n" not in str(info.value)


def test_text_with_placeholders_cannot_fill_a_number() -> None:
    with pytest.raises(ConfigError, match="MaxResults is a integer: text with placeholders"):
        ModelOperation(
            "connect:ListUsers", {"InstanceId": "{i}", "MaxResults": "{n} or so"}, id_column="i"
        )


def test_an_untyped_placeholder_takes_the_type_of_its_member() -> None:
    o = op("connect:ListUsers", {"InstanceId": "{instance}", "MaxResults": "{n}"})
    assert o.params(record(o, instance="i-1", n=" 25 ")) == {"InstanceId": "i-1", "MaxResults": 25}
    with pytest.raises(RowError) as info:
        record(o, instance="i-1", n="many")
    assert info.value.field == "n" and "not a valid int" in info.value.reason
    with pytest.raises(RowError) as info:
        o.params(record(o, instance="i-1", n="0"))  # the model's minimum is 1
    assert info.value.field == "n" and "valid min value: 1" in info.value.reason


def test_a_cell_the_model_refuses_makes_its_row_invalid_naming_column_and_member() -> None:
    o = op()
    with pytest.raises(RowError) as info:
        o.params(record(o, pool="p", username="  ", email="a@example.com"))
    assert info.value.field == "username"
    assert "Username" in info.value.reason and "min length: 1" in info.value.reason


def test_json_cells_are_checked_on_the_first_row_as_template_then_row_by_row() -> None:
    template = {"UserPoolId": "{pool}", "Username": "{u}", "UserAttributes": "{attrs:json}"}
    o = fresh(COGNITO, template)
    bad = '[{"Nmae": "email", "Value": "x"}]'
    with pytest.raises(ConfigError, match=r"on the first row: attrs: .*UserAttributes\[0\]"):
        o.params(record(o, pool="p", u="u1", attrs=bad))
    o = fresh(COGNITO, template)
    good = '[{"Name": "email", "Value": "x"}]'
    assert o.params(record(o, pool="p", u="u1", attrs=good))["UserAttributes"][0]["Name"] == "email"
    with pytest.raises(RowError) as info:
        o.params(record(o, pool="p", u="u2", attrs=bad))
    assert info.value.field == "attrs" and "UserAttributes[0]" in info.value.reason
    with pytest.raises(RowError, match="Invalid type"):
        o.params(record(o, pool="p", u="u3", attrs='"not a list"'))


def test_a_first_row_with_a_bad_value_is_invalid_and_the_next_row_is_checked_as_first() -> None:
    template = {"UserPoolId": "{pool}", "Username": "{u}", "UserAttributes": "{attrs:json}"}
    o = fresh(COGNITO, template)
    with pytest.raises(RowError):
        o.params(record(o, pool="p", u="u1", attrs='[{"Name": 5}]'))
    with pytest.raises(ConfigError, match="first row"):
        o.params(record(o, pool="p", u="u2", attrs='[{"Other": "x"}]'))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("cognito-idp:InitiateAuth", "is not signed with SigV4"),
        ("s3:PutBucketTagging", "S3's own signing rules"),
        ("lambda:Invoke", "takes a streaming input"),
        ("servicediscovery:DiscoverInstances", "host prefix"),
    ],
)
def test_operations_that_are_not_plain_sigv4_requests_are_refused(spec: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        ModelOperation(spec, {})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cognito-idp", "not SERVICE:OperationName"),
        ("cognito:AdminUpdateUserAttributes", "no service 'cognito'; did you mean"),
        ("cognito-idp:AdminUpdateUserAtributes", "did you mean AdminUpdateUserAttributes"),
    ],
)
def test_unknown_services_and_operations_are_config_errors_with_suggestions(
    spec: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_model(spec)


def test_operation_names_may_be_given_in_any_case_or_in_snake_case() -> None:
    assert load_model("cognito-idp:admin_update_user_attributes").name == (
        "AdminUpdateUserAttributes"
    )


def test_rows_are_named_by_a_user_member_by_default_or_by_the_id_column() -> None:
    assert op().id_column == "username"
    connect = {"InstanceId": "{instance}", "UserId": "{user}", "RoutingProfileId": "{profile}"}
    assert op("connect:UpdateUserRoutingProfile", connect).id_column == "user"
    assert op("connect:ListUsers", {"InstanceId": "{instance}"}).id_column == "instance"
    assert op(id_column="email").id_column == "email"
    o = op()
    r = record(o, pool="p1", username="alice", email="a@example.com", account_id="acct")
    assert (r.account_id, r.user_id) == ("acct", "alice")


def test_an_idempotency_token_left_out_is_filled_from_the_row_and_repeats_for_it() -> None:
    template = {
        "ChannelArn": "{channel}",
        "Content": "{text}",
        "Type": "STANDARD",
        "Persistence": "NON_PERSISTENT",
        "ChimeBearer": "{bearer}",
    }
    o = op("chime-sdk-messaging:SendChannelMessage", template, id_column="bearer")
    one = record(o, channel="arn:c", text="hello", bearer="arn:b")
    other = record(o, channel="arn:c", text="bye", bearer="arn:b")
    token = json.loads(o.build(one).body)["ClientRequestToken"]
    assert token == json.loads(o.build(one).body)["ClientRequestToken"]
    assert token != json.loads(o.build(other).body)["ClientRequestToken"]


def test_the_name_changes_with_the_template_so_resume_refuses_another_one() -> None:
    assert op().name != op(template={**COGNITO_TEMPLATE, "Username": "{user}"}).name
    assert op().name.startswith("aws cognito-idp:AdminUpdateUserAttributes params:")


# -- errors, by protocol -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "headers", "body", "expected"),
    [
        (
            COGNITO,  # awsJson1.1: a namespaced __type in the body
            400,
            {"Content-Type": "application/x-amz-json-1.1"},
            b'{"__type": "com.amazonaws.cognito.identity.idp.model#TooManyRequestsException",'
            b' "message": "Rate exceeded"}',
            ("TooManyRequestsException", "Rate exceeded"),
        ),
        (
            "sqs:SendMessage",  # awsJson1.0, query-compatible: the query code from a header
            400,
            {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
            b'{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no such queue"}',
            ("AWS.SimpleQueueService.NonExistentQueue", "no such queue"),
        ),
        (
            "connect:UpdateUserRoutingProfile",  # restJson1: the type in x-amzn-ErrorType
            429,
            {"x-amzn-ErrorType": "TooManyRequestsException:http://internal.amazon.com/coral/"},
            b'{"Message": "Rate exceeded"}',
            ("TooManyRequestsException", "Rate exceeded"),
        ),
        (
            "iam:TagUser",  # awsQuery: an XML ErrorResponse
            400,
            {"Content-Type": "text/xml"},
            b'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
            b"<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
            b"</Error><RequestId>r-1</RequestId></ErrorResponse>",
            ("Throttling", "Rate exceeded"),
        ),
        (
            "ec2:CreateTags",  # ec2Query: Response/Errors/Error
            503,
            {},
            b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit "
            b"exceeded.</Message></Error></Errors><RequestID>r-2</RequestID></Response>",
            ("RequestLimitExceeded", "Request limit exceeded."),
        ),
        (
            "route53:ChangeTagsForResource",  # restXml
            400,
            {},
            b'<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error>'
            b"<Type>Sender</Type><Code>ThrottlingException</Code><Message>Rate exceeded"
            b"</Message></Error><RequestId>r-3</RequestId></ErrorResponse>",
            ("ThrottlingException", "Rate exceeded"),
        ),
        (
            COGNITO,  # a proxy's HTML page: no code, the status stands in
            502,
            {"Content-Type": "text/html"},
            b"<html><body>Bad Gateway</body></html>",
            ("HTTP502", "Bad Gateway"),
        ),
    ],
)
def test_errors_are_read_by_botocores_parser_for_the_protocol(
    spec: str, status: int, headers: dict[str, str], body: bytes, expected: tuple[str, str]
) -> None:
    parser = op(spec, skeleton(spec)).error_parser
    assert parser(status, CIMultiDict(headers), body) == expected


def skeleton(spec: str) -> Any:
    """The template ``operations SERVICE:Op`` suggests: every required member a placeholder."""
    text = describe_operation(spec)
    return json.loads(text[text.index("\n{\n") :])


@pytest.mark.parametrize("status", [400, 403, 429, 500, 503])
def test_a_throttling_code_is_throttling_whatever_the_status(status: int) -> None:
    assert classify(status, "TooManyRequestsException") is ErrorClass.THROTTLED
    assert classify(status, "Throttling") is ErrorClass.THROTTLED


def test_throttling_codes_include_every_code_botocore_retries_as_throttling() -> None:
    botocore_codes = set(botocore_throttling_codes())
    assert "TooManyRequestsException" in botocore_codes  # the list is where we read it from
    assert botocore_codes <= THROTTLING_CODES
    assert "ThrottledClientException" in THROTTLING_CODES  # Chime's, not botocore's


async def test_the_transport_sends_the_target_as_is_and_reads_errors_with_the_operation() -> None:
    seen: list[str] = []

    async def answer(request: web.BaseRequest) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(
            status=400,
            headers={"Retry-After": "3", "x-amzn-RequestId": "req-9"},
            body=b'{"__type": "TooManyRequestsException", "message": "Rate exceeded"}',
        )

    runner = web.ServerRunner(web.Server(answer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transport = AiohttpTransport(
        f"http://127.0.0.1:{port}/base", concurrency=2, error_parser=op().error_parser
    )
    try:
        response = await transport.send("POST", "/v1/a%2Fb?x=b%20c&d=%2B", {}, b"{}")
    finally:
        await transport.close()
        await runner.cleanup()
    assert seen == ["/base/v1/a%2Fb?x=b%20c&d=%2B"]
    assert (response.status, response.error_code, response.message) == (
        400,
        "TooManyRequestsException",
        "Rate exceeded",
    )
    # A throttling code is a cool-down request whatever the status.
    assert (response.request_id, response.retry_after) == ("req-9", 3.0)


# -- endpoints ---------------------------------------------------------------------------------


@pytest.fixture
def clean_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS variables and an empty config file the test may write to."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return config


def test_the_endpoint_comes_from_botocores_rules_for_the_service_and_region(
    clean_aws: Path,
) -> None:
    resolved = resolve_endpoint(op(), "eu-west-1")
    assert resolved.url == "https://cognito-idp.eu-west-1.amazonaws.com"
    assert (resolved.signing_name, resolved.signing_region) == ("cognito-idp", "eu-west-1")


def test_a_global_service_signs_for_the_region_its_endpoint_names(clean_aws: Path) -> None:
    iam = op("iam:TagUser", {"UserName": "{user}", "Tags": []})
    resolved = resolve_endpoint(iam, "eu-west-1")
    assert resolved.url == "https://iam.amazonaws.com"
    assert (resolved.signing_name, resolved.signing_region) == ("iam", "us-east-1")


def test_endpoint_precedence_is_the_sdks(clean_aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--endpoint-url, then AWS_ENDPOINT_URL_<SERVICE_ID>, AWS_ENDPOINT_URL, the profile's
    services section, the profile's endpoint_url, then the service's rules."""
    o = op()

    def url(**kw: Any) -> str:
        return resolve_endpoint(o, "us-east-1", **kw).url

    # Keys of a services section are service ids in snake case, as the SDKs define them.
    clean_aws.write_text(
        "[profile dev]\nservices = local\nendpoint_url = http://127.0.0.1:1000\n"
        "[services local]\ncognito_identity_provider =\n  endpoint_url = http://127.0.0.1:1001\n"
        "[profile other]\nendpoint_url = http://127.0.0.1:1002\n"
    )
    assert url() == "https://cognito-idp.us-east-1.amazonaws.com"
    assert url(profile="other") == "http://127.0.0.1:1002"
    assert url(profile="dev") == "http://127.0.0.1:1001"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1003")
    assert url(profile="dev") == "http://127.0.0.1:1003"
    # The service's own variable is named for its service id, "Cognito Identity Provider".
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "http://127.0.0.1:1004")
    assert url(profile="dev") == "http://127.0.0.1:1004"
    assert url(endpoint_url="http://127.0.0.1:1005") == "http://127.0.0.1:1005"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert url(profile="dev") == "https://cognito-idp.us-east-1.amazonaws.com"
    assert url(endpoint_url="http://127.0.0.1:1005") == "http://127.0.0.1:1005"


def test_an_unknown_profile_is_a_config_error_naming_the_option(clean_aws: Path) -> None:
    with pytest.raises(ConfigError, match="--profile"):
        resolve_endpoint(op(), "us-east-1", profile="nope")


# -- the commands ------------------------------------------------------------------------------


def test_operations_lists_services_then_operations(run: Run) -> None:  # noqa: F811
    code, out, _ = run("operations")
    assert code == 0 and "cognito-idp" in out.split() and "connect" in out.split()
    assert out.split() == list_services()
    code, out, _ = run("operations", "cognito-idp")
    assert code == 0 and "AdminUpdateUserAttributes" in out.split()
    assert out.split() == list_operations("cognito-idp")


def test_operations_of_one_operation_gives_a_skeleton_the_run_accepts(run: Run) -> None:  # noqa: F811
    code, out, _ = run("operations", "connect:UpdateUserRoutingProfile")
    assert code == 0
    assert "restJson1, POST /users/{InstanceId}/{UserId}/routing-profile" in out
    assert "* RoutingProfileId" in out
    skeleton = json.loads(out[out.index("{\n") :])
    assert skeleton == {
        "RoutingProfileId": "{routing_profile_id}",
        "UserId": "{user_id}",
        "InstanceId": "{instance_id}",
    }
    assert ModelOperation("connect:UpdateUserRoutingProfile", skeleton).id_column == "user_id"


def test_operations_of_an_unknown_service_exits_2_with_one_line(run: Run) -> None:  # noqa: F811
    code, _, err = run("operations", "cognito-ipd")
    assert code == 2
    assert "did you mean cognito-idp" in one_line_error(err)


@pytest.fixture
def cognito_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    users = tmp_path / "users.csv"
    users.write_text("pool,username,email\np1,alice,a@example.com\np1,bob,b@example.com\n")
    params = tmp_path / "params.json"
    params.write_text(json.dumps(COGNITO_TEMPLATE))
    yield users, params


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--path-template", "/v1/{username}"], "--aws-operation and --path-template cannot"),
        (["--service", "execute-api"], "--aws-operation and --service cannot"),
        (["--operation", "x"], "--aws-operation and --operation cannot"),
        (["--body-template", "b.json"], "--aws-operation and --body-template cannot"),
        (["--read-path-template", "/v1/{username}"], "--aws-operation and --read-path-template"),
        (["--read-field", "email=/email"], "--aws-operation and --read-field cannot"),
    ],
)
def test_conflicting_options_are_one_line_usage_errors(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
    extra: list[str],
    expected: str,
) -> None:
    users, params = cognito_files
    code, _, err = run(
        "run", users, "--aws-operation", COGNITO, "--params-template", params, *extra
    )
    assert code == 2 and expected in one_line_error(err)


@pytest.mark.parametrize("option", ["--read-before", "--skip-unchanged"])
def test_a_model_operation_cannot_read_before_so_the_run_exits_2_naming_the_option(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
    clean_aws: Path,
    option: str,
) -> None:
    users, params = cognito_files
    code, _, err = run(
        "run", users, "--aws-operation", COGNITO, "--params-template", params, "--dry-run", option
    )
    assert code == 2
    assert one_line_error(err).startswith(
        f"{option}: operation 'aws cognito-idp:AdminUpdateUserAttributes params:"
    )
    assert "cannot read a user's state" in one_line_error(err)
    assert not (users.parent / "users.report.csv").exists()


def test_undo_of_a_model_operation_exits_2_as_it_has_no_before_state(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
) -> None:
    users, params = cognito_files
    undo = users.parent / "undo.csv"
    code, _, err = run(
        "undo", users.parent / "users.report.csv", "--out", undo,
        "--aws-operation", COGNITO, "--params-template", params,
    )  # fmt: skip
    assert code == 2
    assert one_line_error(err).startswith(
        "undo: operation 'aws cognito-idp:AdminUpdateUserAttributes params:"
    )
    assert not undo.exists()


def test_params_template_needs_aws_operation_and_back(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
) -> None:
    users, params = cognito_files
    code, _, err = run("run", users, "--params-template", params)
    assert code == 2 and "only used with --aws-operation" in one_line_error(err)
    code, _, err = run("run", users, "--aws-operation", COGNITO)
    assert code == 2 and "--params-template: required" in one_line_error(err)


def test_a_template_wrong_on_the_first_row_exits_2_before_the_report_exists(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
    clean_aws: Path,
) -> None:
    users, params = cognito_files
    users.write_text('pool,username,attrs\np1,alice,"[{""Nmae"": ""x""}]"\n')
    params.write_text(
        json.dumps({"UserPoolId": "{pool}", "Username": "{username}", "UserAttributes": "{attrs}"})
    )
    code, _, err = run(
        "run", users, "--aws-operation", COGNITO, "--params-template", params, "--dry-run"
    )
    assert code == 2
    assert "on the first row: attrs: " in one_line_error(err)
    assert "UserAttributes[0]" in one_line_error(err)
    assert not (users.parent / "users.report.csv").exists()


def test_a_dry_run_plans_every_row_without_credentials(
    run: Run,  # noqa: F811
    cognito_files: tuple[Path, Path],
    clean_aws: Path,
) -> None:
    users, params = cognito_files
    with open(users, "a", encoding="utf-8") as f:
        f.write("p1,,c@example.com\n")  # no username: the model needs one
    code, _, _ = run(
        "run", users, "--aws-operation", COGNITO, "--params-template", params, "--dry-run"
    )
    assert code == 1
    report = (users.parent / "users.report.csv").read_text().splitlines()
    assert [line.split(",")[1:3] for line in report[1:]] == [
        ["alice", "planned"],
        ["bob", "planned"],
        ["", "invalid"],
    ]
    assert "username: Invalid length for parameter Username" in report[3]
