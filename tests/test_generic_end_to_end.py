"""A second, non-Chime operation end to end: a PATCH to an API Gateway style endpoint
(signing name ``execute-api``, another region), with a body built from a JSON template.

The server below checks every signature with the mock's own SigV4 verifier (configured for
``execute-api`` in ``eu-west-1``), throttles the first request for each user with a 429, and
records the decoded path and the JSON body it accepted.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from async_updater.aws.credentials import StaticCredentials
from async_updater.cli import build_parser, run_command
from async_updater.testing.mock.verifier import SigV4Verifier

AK, SK = "AKIDFLAGS", "flags-secret"
REGION, SERVICE = "eu-west-1", "execute-api"


class FlagsApi:
    """PATCH /v1/orgs/{org}/members/{member}/flags, SigV4 (execute-api) on loopback."""

    def __init__(self) -> None:
        self.verifier = SigV4Verifier({AK: SK}, region=REGION, service=SERVICE)
        self.applied: dict[tuple[str, str], Any] = {}
        self.seen: set[tuple[str, str]] = set()
        self.throttled = 0
        self.auth_failures = 0
        self.url = ""
        self._runner: web.ServerRunner | None = None

    async def __aenter__(self) -> FlagsApi:
        runner = web.ServerRunner(web.Server(self.handle, access_log=None))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def handle(self, request: web.BaseRequest) -> web.Response:
        body = await request.read()
        failure = self.verifier.verify(
            request.method, request.raw_path, request.headers, body, now=time.time()
        )
        if failure is not None:
            self.auth_failures += 1
            return web.json_response({"message": failure.message}, status=failure.status)
        parts = request.raw_path.split("/")
        shape = [p for i, p in enumerate(parts) if i not in (3, 5)]
        if request.method != "PATCH" or shape != ["", "v1", "orgs", "members", "flags"]:
            return web.json_response({"message": "no such route"}, status=404)
        key = (unquote(parts[3]), unquote(parts[5]))
        if key not in self.seen:
            # API Gateway's throttling answer: 429 with its own error type.
            self.seen.add(key)
            self.throttled += 1
            return web.json_response(
                {"message": "Too Many Requests"},
                status=429,
                headers={"x-amzn-ErrorType": "TooManyRequestsException"},
            )
        self.applied[key] = json.loads(body)
        return web.json_response({"ok": True}, headers={"x-amzn-RequestId": "req-1"})


MEMBERS = [
    ("org-1", "alice", "true", "3", "ops"),
    ("org 2", "b/o b", "false", "0", "night shift"),
    ("org-1", "zoë", "yes", "12", "ops"),
    ("org-3", "carol", "maybe", "1", "ops"),  # invalid: not a boolean
]


def write_members(path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["org", "member", "enabled", "seats", "team"])
        w.writerows(MEMBERS)


async def run_flags(api: FlagsApi, users: Path, report: Path, service: str, *extra: str) -> int:
    """``async-updater run`` of the members file against ``api`` as a templated PATCH."""
    args = build_parser().parse_args(
        [
            "run", str(users), "--report", str(report), "--endpoint-url", api.url,
            "--region", REGION, "--method", "PATCH", "--service", service,
            "--path-template", "/v1/orgs/{org}/members/{member}/flags", *extra, "--no-progress",
        ]
    )  # fmt: skip
    with open(os.devnull, "w") as out:
        return await run_command(args, credentials=StaticCredentials(AK, SK), out=out)


async def test_templated_patch_to_another_service_is_signed_retried_and_applied(
    tmp_path: Path,
) -> None:
    users, report = tmp_path / "members.csv", tmp_path / "members.report.csv"
    write_members(users)
    template = tmp_path / "body.json"
    template.write_text(
        json.dumps(
            {"flags": {"enabled": "{enabled:bool}", "seats": "{seats:int}"}, "by": "team {team}"}
        )
    )
    async with FlagsApi() as api:
        code = await run_flags(
            api, users, report, SERVICE, "--body-template", str(template), "--scope-column", "org"
        )

    assert code == 1  # one invalid row
    assert api.auth_failures == 0
    assert api.throttled == 3  # each valid member was throttled once, then retried
    assert api.applied == {
        ("org-1", "alice"): {"flags": {"enabled": True, "seats": 3}, "by": "team ops"},
        ("org 2", "b/o b"): {"flags": {"enabled": False, "seats": 0}, "by": "team night shift"},
        ("org-1", "zoë"): {"flags": {"enabled": True, "seats": 12}, "by": "team ops"},
    }
    with open(report, encoding="utf-8", newline="") as f:
        rows = {r["user_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alice", "b/o b", "zoë", "carol"}
    for member in ("alice", "b/o b", "zoë"):
        assert rows[member]["status"] == "updated"
        assert rows[member]["attempts"] == "2"
        assert rows[member]["http_status"] == "200"
    assert rows["zoë"]["account_id"] == "org-1"
    assert rows["carol"]["status"] == "invalid"
    assert "line 5: enabled" in rows["carol"]["message"]


async def test_a_wrong_signing_name_is_rejected_by_the_server(tmp_path: Path) -> None:
    users, report = tmp_path / "members.csv", tmp_path / "r.csv"
    write_members(users)
    async with FlagsApi() as api:
        # Signed for the wrong service: the server must refuse it.
        code = await run_flags(api, users, report, "chime", "--max-attempts", "1")
    assert code == 1
    assert api.applied == {}
    assert api.auth_failures == 4  # no body template: every row is valid
