"""Where requests go: --endpoint-url, else the AWS SDKs' environment variables, else Chime."""

from __future__ import annotations

import pytest

from async_updater.cli import build_parser, endpoint_from
from async_updater.config import DEFAULT_ENDPOINT
from async_updater.errors import ConfigError


def args(*extra: str) -> object:
    return build_parser().parse_args(["run", "users.csv", *extra])


def test_without_option_or_environment_chime_goes_to_the_public_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_CHIME", raising=False)
    assert endpoint_from(args(), "chime") == DEFAULT_ENDPOINT


def test_service_specific_variable_wins_over_the_general_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EXECUTE_API", "http://127.0.0.1:2")
    assert endpoint_from(args(), "execute-api") == "http://127.0.0.1:2"
    assert endpoint_from(args(), "chime") == "http://127.0.0.1:1"


def test_the_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME", "http://127.0.0.1:2")
    chosen = endpoint_from(args("--endpoint-url", "http://127.0.0.1:3"), "chime")
    assert chosen == "http://127.0.0.1:3"


def test_another_service_without_an_endpoint_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_EXECUTE_API", raising=False)
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_EXECUTE_API"):
        endpoint_from(args(), "execute-api")
