"""Model operations end to end: the CLI, in its own process, against moto in server mode (a real
HTTP server on a loopback port, reached the way AWS is) and against the project's mock in its
Cognito mode, which verifies every signature and throttles with 400 TooManyRequestsException.
What the servers hold afterwards is read back and compared with the CSV."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from async_updater.aws.credentials import StaticCredentials
from async_updater.cli import build_parser, run_command
from async_updater.testing.mock import MockChimeServer
from async_updater.testing.mock.config import MockApi, MockConfig

MOTO_KEY = "testing"  # moto accepts any key; this one is its documented default
COGNITO = "cognito-idp:AdminUpdateUserAttributes"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server for the session: started once (a few seconds), stopped at the end."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the CLI process: moto's credentials and nothing else of AWS."""
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=MOTO_KEY,
        AWS_SECRET_ACCESS_KEY=MOTO_KEY,
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def boto(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_KEY,
    )


def run_cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_updater", "run", *map(str, args), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_cognito_attributes_from_a_csv_land_in_moto_as_boto3_reads_them(
    moto_url: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    cognito = boto("cognito-idp", moto_url)
    pool = cognito.create_user_pool(
        PoolName="e2e",
        Schema=[{"Name": "team", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    names = [f"user-{i}@example.com" for i in range(40)]
    for name in names:
        cognito.admin_create_user(
            UserPoolId=pool,
            Username=name,
            UserAttributes=[{"Name": "given_name", "Value": "Old"}],
        )
    users = tmp_path / "users.csv"
    wanted = {n: (f"New, {i}", f"team {i % 3}") for i, n in enumerate(names)}
    with open(users, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pool", "username", "given_name", "team"])
        w.writerows([pool, n, g, t] for n, (g, t) in wanted.items())
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps(
            {
                "UserPoolId": "{pool}",
                "Username": "{username}",
                "UserAttributes": [
                    {"Name": "given_name", "Value": "{given_name}"},
                    {"Name": "custom:team", "Value": "{team}"},
                ],
            }
        )
    )
    report = tmp_path / "report.csv"
    done = run_cli(
        aws_env, users, "--aws-operation", COGNITO, "--params-template", params,
        "--endpoint-url", moto_url, "--region", "us-east-1", "--report", report,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = report_rows(report)
    # One row per user, in the order answers came back.
    assert sorted(r["user_id"] for r in rows) == sorted(names)
    assert {r["status"] for r in rows} == {"updated"}
    assert all(r["request_id"] for r in rows)
    for name, (given, team) in wanted.items():
        got = cognito.admin_get_user(UserPoolId=pool, Username=name)["UserAttributes"]
        attributes = {a["Name"]: a["Value"] for a in got}
        assert (attributes["given_name"], attributes["custom:team"]) == (given, team)


def test_an_unknown_user_fails_with_cognitos_own_code_and_the_rest_are_applied(
    moto_url: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    cognito = boto("cognito-idp", moto_url)
    pool = cognito.create_user_pool(PoolName="e2e-missing")["UserPool"]["Id"]
    cognito.admin_create_user(UserPoolId=pool, Username="real")
    users = tmp_path / "users.csv"
    users.write_text(f"pool,username,name\n{pool},real,Real Name\n{pool},ghost,Nobody\n")
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps(
            {
                "UserPoolId": "{pool}",
                "Username": "{username}",
                "UserAttributes": [{"Name": "name", "Value": "{name}"}],
            }
        )
    )
    report = tmp_path / "report.csv"
    done = run_cli(
        aws_env, users, "--aws-operation", COGNITO, "--params-template", params,
        "--endpoint-url", moto_url, "--report", report,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    by_user = {r["user_id"]: r for r in report_rows(report)}
    assert by_user["real"]["status"] == "updated"
    assert (by_user["ghost"]["status"], by_user["ghost"]["http_status"]) == ("failed", "400")
    assert by_user["ghost"]["error_code"] == "UserNotFoundException"
    assert by_user["ghost"]["attempts"] == "1"  # a final error: not retried
    got = cognito.admin_get_user(UserPoolId=pool, Username="real")["UserAttributes"]
    assert {"Name": "name", "Value": "Real Name"} in got


def test_quicksight_users_updated_over_rest_json_read_back_through_boto3(
    moto_url: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """restJson1: ids in the path (spaces, @ and + percent-encoded), the rest in a JSON body."""
    quicksight = boto("quicksight", moto_url)
    account = "123456789012"  # moto's default account
    names = [f"analyst {i}+qs@example.com" for i in range(12)]
    for name in names:
        quicksight.register_user(
            AwsAccountId=account,
            Namespace="default",
            IdentityType="QUICKSIGHT",
            Email="old@example.com",
            UserRole="READER",
            UserName=name,
        )
    users = tmp_path / "users.csv"
    roles = ["AUTHOR", "ADMIN", "READER"]
    with open(users, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_id", "user", "email", "role"])
        w.writerows([account, n, f"new{i}@example.com", roles[i % 3]] for i, n in enumerate(names))
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps(
            {
                "AwsAccountId": "{account_id}",
                "Namespace": "default",
                "UserName": "{user}",
                "Email": "{email}",
                "Role": "{role}",
            }
        )
    )
    report = tmp_path / "report.csv"
    done = run_cli(
        aws_env, users, "--aws-operation", "quicksight:UpdateUser", "--params-template", params,
        "--endpoint-url", moto_url, "--report", report, "--limit-scope", "account",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = report_rows(report)
    # The report is in the order answers came back, not the input's: compare as sets of rows.
    assert sorted((r["account_id"], r["user_id"], r["status"]) for r in rows) == sorted(
        (account, n, "updated") for n in names
    )
    for i, name in enumerate(names):
        user = quicksight.describe_user(AwsAccountId=account, Namespace="default", UserName=name)
        assert (user["User"]["Email"], user["User"]["Role"]) == (
            f"new{i}@example.com",
            roles[i % 3],
        )


async def test_cognito_against_the_throttling_mock_loses_nothing(tmp_path: Path) -> None:
    """The mock verifies every signature (signing name cognito-idp) and answers throttling
    with 400 TooManyRequestsException; every user must end with the attributes of the CSV."""
    n = 600
    users = tmp_path / "users.csv"
    with open(users, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pool", "username", "email", "team"])
        for i in range(n):
            w.writerow([f"us-east-1_pool{i % 3}", f"user {i}/x", f"u{i}@example.com", f"t{i % 7}"])
        w.writerow(["us-east-1_pool0", "", "nobody@example.com", "t0"])  # invalid: no username
    params = tmp_path / "params.json"
    params.write_text(
        json.dumps(
            {
                "UserPoolId": "{pool}",
                "Username": "{username}",
                "UserAttributes": [
                    {"Name": "email", "Value": "{email}"},
                    {"Name": "custom:team", "Value": "{team}"},
                ],
            }
        )
    )
    report = tmp_path / "report.csv"
    config = MockConfig(
        credentials={"AKIDCOGNITO": "cognito-secret"},
        api=MockApi.COGNITO,
        rate_limit=250.0,
        burst=10,
        latency_ms=5.0,
        seed=5,
    )
    async with MockChimeServer(config) as server:
        args = build_parser().parse_args(
            ["run", str(users), "--aws-operation", COGNITO, "--params-template", str(params),
             "--endpoint-url", server.url, "--region", "us-east-1", "--report", str(report),
             "--rate", "1000", "--no-progress"]
        )  # fmt: skip
        with open(os.devnull, "w") as quiet:
            code = await run_command(
                args, credentials=StaticCredentials("AKIDCOGNITO", "cognito-secret"), out=quiet
            )
    rows = report_rows(report)
    assert len(rows) == n + 1  # one report row per input row
    assert code == 1  # the one invalid row
    assert sum(r["status"] == "updated" for r in rows) == n
    (invalid,) = [r for r in rows if r["status"] == "invalid"]
    assert "username: Invalid length for parameter Username" in invalid["message"]
    assert server.counters["auth_failed"] == 0
    assert server.attributes == {
        (f"us-east-1_pool{i % 3}", f"user {i}/x"): {
            "email": f"u{i}@example.com",
            "custom:team": f"t{i % 7}",
        }
        for i in range(n)
    }
    assert max(server.apply_counts.values()) == 1
    requests = server.counters["requests"]
    print(
        f"\nmock cognito e2e: {n} users, {requests} requests, "
        f"{server.counters['throttled']} throttled ({server.counters['throttled'] / requests:.1%})"
    )
